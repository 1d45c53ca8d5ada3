"""Sandbox worker process: isolates itself once, then forks one short-lived child per program.

Started by :mod:`reward.pool` as ``python -I -S reward/_worker.py CONFIG_JSON``; it speaks JSON lines on
stdin/stdout (one request in, one result out). Standard library only, so it starts fast and forks small.

Set up once per worker (as root): private network namespace (no interfaces up: loopback and the outside are
unreachable), private mount namespace with tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock, the root file
system remounted read-only, directories only root can traverse (e.g. ``/root`` holding the interpreter)
replaced by a tmpfs that exposes just the interpreter prefix, a ``pids`` cgroup, and child-subreaper status
so orphans come back to us. Commonly used modules are imported before forking, so programs get them free.

Per program: compile in the worker (syntax errors end here) -> ``fork`` (the child inherits the cgroup) ->
new session -> stdio to /dev/null -> rlimits (CPU, address space,
processes, file size, open files, no core) -> drop to this worker's own unprivileged uid -> run the program
and the tests in-process under an audit hook -> stream one record per test to a pipe. The worker enforces
the wall-clock deadline, then kills the process group and everything left in the cgroup.

Guarantees: a program cannot reach the network, write outside its tmpfs, read files only root may read,
signal the worker, exceed the CPU/memory/process/output limits, or stall the worker past its deadline.
Results come only from records carrying a per-run nonce, written after the tests ran; exiting early,
printing success markers, redefining ``check``/helpers or builtins the tests use, or tampering with the
harness functions cannot produce "passed".
Non-guarantees: the program shares the process with the harness. The audit hook blocks ``gc`` heap walks,
``ctypes``, tracing and ``__code__`` swaps, but frames stay reachable (the standard library needs
``sys._getframe``), so a program written to walk up to the harness's frame can read the nonce and forge
results. Python is not a security boundary; kernel exploits are out of scope. Without root (or namespaces) isolation is "partial":
rlimits, deadlines and killing every leftover process only; the result says so.
"""

from __future__ import annotations

import builtins
import ctypes
import gc
import importlib
import io
import json
import os
import resource
import select
import signal
import sys
import time

# Imported before forking so that children find them in sys.modules (fast, and readable after the uid drop).
# Each module makes every fork slower (more pages to map), so only the ones generated code uses most.
PRELOADED = ("bisect", "collections", "copy", "functools", "heapq", "itertools", "math", "operator", "random",
             "re", "string", "typing")

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
CGROUP_PIDS_ROOT = "/sys/fs/cgroup/pids"
RESULT_FD = 3
FIELD, RECORD = "\x1f", "\x1e"
MAX_RECORD_BYTES = 1 << 20
OUTPUT_LIMIT = 4096
MAX_PARENT_COMPILE = 1 << 20  # programs up to 1 MiB are compiled by the worker (bounded time, no fork)

# Events a program has no business raising: they reach the harness's memory or bypass Python. (Frames stay
# reachable: namedtuple, enum and typing need sys._getframe, so a program that walks frames can read the nonce.)
BLOCKED_EVENTS = frozenset(
    {"sys._current_frames", "sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
     "gc.get_referents", "code.__new__"}
)

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data) -> None:
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    _check(_libc.mount(*args, flags, data.encode() if data else None), f"mount {target}")


def _expose_interpreter(prefix: str) -> None:
    """Let the unprivileged uid read the interpreter when an ancestor (e.g. /root, mode 700) forbids it.

    The blocking ancestor is covered with an empty tmpfs holding only a read-only bind of ``prefix``, so the
    rest of that directory stays invisible to programs.
    """
    prefix = os.path.realpath(prefix)
    parts = prefix.strip("/").split("/")
    blocking = None
    for depth in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        if not os.stat(ancestor).st_mode & 0o001:
            blocking = ancestor
            break
    if blocking is None:
        return
    fd = os.open(prefix, os.O_PATH)
    try:
        _mount("tmpfs", blocking, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        os.makedirs(prefix, mode=0o755, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", prefix, None, MS_BIND | MS_REC, None)
        _mount(None, prefix, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
    finally:
        os.close(fd)


def _make_cgroup(pids_max: int) -> str | None:
    """Move this worker into its own pids cgroup: children inherit it, so forks need no extra step."""
    path = os.path.join(CGROUP_PIDS_ROOT, "codealign", f"w{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "pids.max"), "w") as fh:
            fh.write(str(pids_max + 1))  # + the worker itself
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except OSError:
        return None
    return path


def setup(cfg: dict) -> dict:
    """Isolate this worker once; return what was achieved (``isolation`` full|partial and notes)."""
    notes: list[str] = []
    state = {"uid": None, "cgroup": None, "isolated_fs": False, "tmp_root": None}
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    want = cfg.get("isolate", True)
    if want and os.geteuid() == 0:
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            _expose_interpreter(sys.base_prefix)
            size = int(cfg.get("tmpfs_mb", 64))
            for d in PRIVATE_DIRS:
                if os.path.isdir(d):
                    _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
            # Last, so that if it fails the private /tmp above is still there for the partial mode.
            _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            state["isolated_fs"] = True
            state["uid"] = int(cfg["uid"])
        except OSError as exc:
            notes.append(f"namespaces unavailable ({exc})")
        state["cgroup"] = _make_cgroup(int(cfg.get("pids_max", 64))) if cfg.get("cgroup", True) else None
        if state["cgroup"] is None:
            notes.append("no pids cgroup: process cap falls back to RLIMIT_NPROC of the per-worker uid")
    elif want:
        notes.append("not running as root: no namespaces, no uid drop")
    else:
        notes.append("isolation disabled by configuration")
    if not state["isolated_fs"]:
        state["tmp_root"] = f"/tmp/codealign-sbx-{os.getpid()}-{os.urandom(4).hex()}"
        os.mkdir(state["tmp_root"], 0o700)
    full = state["isolated_fs"] and state["uid"] is not None
    state["isolation"] = "full" if full else "partial"
    state["notes"] = notes
    state["pids_max"] = int(cfg.get("pids_max", 64))
    return state


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class _CappedText(io.TextIOBase):
    """stdout/stderr for programs: keeps the first bytes, drops the rest (huge output costs nothing)."""

    def __init__(self, limit: int):
        self.parts: list[str] = []
        self.room = limit

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        if self.room > 0:
            self.parts.append(s[: self.room])
            self.room -= len(s)
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


def _child(program, tests: list, nonce: str, limits: dict, sample_dir: str, state: dict) -> None:
    """Runs in the forked child; never returns. Every name it uses after the program starts is a local.

    ``program`` is normally a code object compiled by the worker (compiling here would pay copy-on-write
    faults for every page the compiler touches: ~1 ms); source text only for oversized programs.
    """
    # Programs may rebind builtins or module attributes; the harness only uses what it captured here.
    write, exit_now, exec_, compile_, dict_, type_ = os.write, os._exit, exec, compile, dict, type
    isinstance_, str_, len_, enumerate_, runtime_error = isinstance, str, len, enumerate, RuntimeError
    BaseException_, SyntaxError_, ValueError_ = BaseException, SyntaxError, ValueError
    MemoryError_, AssertionError_ = MemoryError, AssertionError
    blocked_events = BLOCKED_EVENTS
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(RESULT_FD + 1, 1 << 16)
    cpu = int(limits["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = state["vm_bytes"] + int(limits["memory_mb"]) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with an error instead of killing
    uid = state["uid"]
    os.mkdir(sample_dir, 0o700)
    if uid is not None:
        nproc = state["pids_max"]
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        os.chown(sample_dir, uid, uid)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.chdir(sample_dir)  # the environment (HOME, TMPDIR) was set once by the worker
    out = _CappedText(OUTPUT_LIMIT)
    sys.stdout = sys.stderr = out
    sys.stdin = io.StringIO("")
    clean_builtins = state["clean_builtins"]

    def emit(*fields) -> None:
        text = FIELD.join(str_(f).replace(RECORD, " ").replace(FIELD, " ") for f in (nonce, *fields)) + RECORD
        data = text.encode("utf-8", "replace")
        while data:
            data = data[write(RESULT_FD, data) :]

    def describe(exc) -> tuple:
        """(kind, type name, program line, message) of an exception."""
        line, tb = "", exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<string>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if isinstance_(exc, SyntaxError_) and exc.filename == "<string>":
            line = exc.lineno or ""
        try:
            message = str_(exc)[:2000]  # runs the program's __str__: still under the audit hook
        except BaseException_:
            message = "<unprintable>"
        if isinstance_(exc, MemoryError_):
            kind = "memory_exceeded"
        elif isinstance_(exc, AssertionError_):
            kind = "failed"
        else:
            kind = "runtime_error"
        return kind, type_(exc).__name__, line, message

    def audit(event, args) -> None:
        if event in blocked_events or event.startswith("ctypes."):
            raise runtime_error(f"sandbox: {event} is not allowed")
        if event == "object.__setattr__" and args[1] == "__code__":
            raise runtime_error("sandbox: replacing __code__ is not allowed")

    sys.addaudithook(audit)
    try:
        code = program if not isinstance_(program, str_) else compile_(program, "<string>", "exec", 0, True)
    except BaseException_ as exc:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
        kind, etype, line, message = describe(exc)
        if isinstance_(exc, (SyntaxError_, ValueError_)):
            kind = "syntax_error"
        emit("program", kind, etype, line, message, "")
        exit_now(0)
    program_globals = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec_(code, program_globals)
    except BaseException_ as exc:
        kind, etype, line, message = describe(exc)
        emit("program", kind, etype, line, message, out.text())
        exit_now(0)
    for index, test_code in enumerate_(tests):
        test_globals = dict_(program_globals)
        # Tests see builtins as they were before the program ran: the worker's snapshot, which rebinding
        # builtins.* does not reach. Not copied per test (that would copy-on-write the pages of ~150 builtin
        # objects); only a program walking frames could reach it (see the module docstring).
        test_globals["__builtins__"] = clean_builtins
        try:
            exec_(test_code, test_globals)
        except BaseException_ as exc:
            kind, etype, line, message = describe(exc)
            emit("test", index, kind, etype, line, message)
            if limits.get("fail_fast"):
                break
        else:
            emit("test", index, "passed", "", "", "")
    emit("done", len_(tests), out.text())
    exit_now(0)


def _parse_records(raw: bytes, nonce: str) -> tuple[dict, dict | None, dict | None]:
    """Records of this run (others are forged or truncated and ignored): tests, program error, done."""
    tests: dict[int, tuple] = {}
    program = done = None
    for chunk in raw.decode("utf-8", "replace").split(RECORD):
        fields = chunk.split(FIELD)
        if len(fields) < 2 or fields[0] != nonce:
            continue
        tag = fields[1]
        if tag == "test" and len(fields) == 7 and fields[2].isdigit():
            tests.setdefault(int(fields[2]), tuple(fields[3:]))
        elif tag == "program" and len(fields) == 7 and program is None:
            program = dict(zip(("kind", "etype", "line", "message", "output"), fields[2:]))
        elif tag == "done" and len(fields) == 4:
            done = {"output": fields[3]}
    return tests, program, done


def _line(value: str) -> int | None:
    return int(value) if value and value.isdigit() else None


def _verdict(tests_total: int, records, outcome: dict) -> dict:
    tests, program, done = records
    passed = sum(1 for r in tests.values() if r[0] == "passed")
    result = {"tests_passed": passed, "tests_total": tests_total, "error_type": None, "error_line": None,
              "error_message": "", "output": ""}
    if program is not None:
        result.update(verdict=program["kind"], error_type=program["etype"], error_line=_line(program["line"]),
                      error_message=program["message"], output=program["output"], tests_passed=0)
        return result
    if done is None and outcome["timed_out"]:
        result.update(verdict="timeout", error_type="Timeout", error_message="timed out")
        return result
    if done is None:
        sig = outcome["signal"]
        if sig == signal.SIGXCPU:
            result.update(verdict="timeout", error_type="CPUTimeLimit", error_message="timed out")
        elif sig:  # SIGKILL included: without a memory cgroup it is the program (or the OOM killer), not us
            name = signal.Signals(sig).name
            result.update(verdict="runtime_error", error_type=name, error_message=f"killed by {name}")
        else:
            code = outcome["exit_code"]
            result.update(verdict="runtime_error", error_type="EarlyExit",
                          error_message=f"exited with code {code} before the tests finished")
        return result
    result["output"] = done["output"]
    failures = [tests[i] for i in sorted(tests) if tests[i][0] != "passed"]
    if passed == tests_total:
        result["verdict"] = "passed"
    elif failures:
        kind, etype, line, message = failures[0]
        result.update(verdict=kind, error_type=etype, error_line=_line(line), error_message=message)
    else:  # fail_fast stopped early without a recorded failure cannot happen; be explicit anyway
        result.update(verdict="runtime_error", error_type="IncompleteRun", error_message="tests did not all run")
    return result


def _syntax_error(exc: Exception, tests_total: int, start: float) -> dict:
    line = getattr(exc, "lineno", None)
    return {"verdict": "syntax_error", "tests_passed": 0, "tests_total": tests_total,
            "error_type": type(exc).__name__, "error_line": line if isinstance(line, int) else None,
            "error_message": str(exc), "output": "", "duration_s": time.monotonic() - start}


class Worker:
    def __init__(self, state: dict):
        self.state = state
        self.counter = 0
        self.code_cache: dict[str, object] = {}

    def _compiled(self, tests: list[str]) -> list:
        codes = []
        for source in tests:
            code = self.code_cache.get(source)
            if code is None:
                if len(self.code_cache) > 4096:
                    self.code_cache.clear()
                code = self.code_cache[source] = compile(source, "<test>", "exec", dont_inherit=True)
            codes.append(code)
        return codes

    def run(self, req: dict) -> dict:
        start = time.monotonic()
        try:
            test_codes = self._compiled(req["tests"])
        except SyntaxError as exc:
            return {"verdict": "sandbox_error", "error_type": "TestSyntaxError", "error_message": str(exc),
                    "tests_total": len(req["tests"])}
        program = req["program"]
        if len(program) <= MAX_PARENT_COMPILE:
            try:
                program = compile(program, "<string>", "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
                return _syntax_error(exc, len(test_codes), start)
            except (RecursionError, MemoryError):
                pass  # let the child, under its limits, fail on it and classify the error
        limits = {k: req[k] for k in ("timeout_s", "memory_mb", "fail_fast") if k in req}
        self.counter += 1
        root = self.state["tmp_root"] or "/tmp"
        sample_dir = os.path.join(root, f"s{self.counter}")
        nonce = os.urandom(8).hex()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                os.dup2(write_end, RESULT_FD)
                _child(program, test_codes, nonce, limits, sample_dir, self.state)
            finally:
                os._exit(70)
        os.close(write_end)
        outcome = self._wait(pid, read_end, start + float(req["timeout_s"]))
        os.close(read_end)
        self._cleanup(pid)
        result = _verdict(len(test_codes), _parse_records(outcome["raw"], nonce), outcome)
        if outcome["exit_code"] == 70 and result["verdict"] == "runtime_error" and not outcome["raw"]:
            result.update(verdict="sandbox_error", error_type="HarnessSetup",
                          error_message="the sandbox could not start the program")
        result["duration_s"] = time.monotonic() - start
        return result

    def _wait(self, pid: int, read_end: int, deadline: float) -> dict:
        # A pidfd makes the child's exit selectable; kernels before 5.3 lack it, so poll there instead.
        pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        os.set_blocking(read_end, False)
        raw = bytearray()
        watch = [read_end] + ([pidfd] if pidfd is not None else [])
        timed_out, status = False, None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                ready, _, _ = select.select(watch, [], [], remaining if pidfd is not None else min(remaining, 0.005))
                if read_end in ready and not _drain(read_end, raw):
                    watch.remove(read_end)
                if pidfd is None or pidfd in ready:
                    done_pid, wait_status = os.waitpid(pid, 0 if pidfd is not None else os.WNOHANG)
                    if done_pid:
                        status = wait_status
                        break
            _drain(read_end, raw)
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if status is None:
            _killpg(pid)
            _, status = os.waitpid(pid, 0)
        return {
            "raw": bytes(raw),
            "timed_out": timed_out,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }

    def _cleanup(self, pid: int) -> None:
        _killpg(pid)
        cgroup = self.state["cgroup"]
        if cgroup:
            kill_cgroup(cgroup, spare=os.getpid(), between=_reap)
            _reap_until_alone(cgroup)
        elif self.state["uid"] is not None:
            self._kill_uid()
        else:
            _kill_descendants()
        _reap()
        _wipe(self.state["tmp_root"] or "/tmp")

    def _kill_uid(self) -> None:
        """Without a cgroup, the run's leftovers are exactly the processes of this worker's uid. A reaper with
        that uid repeats kill(-1) until a probe fork under RLIMIT_NPROC=2 succeeds, i.e. until it is the
        uid's only process (zombies count, so it also waits for us to reap every one of them)."""
        uid = self.state["uid"]
        reaper = os.fork()
        if reaper == 0:
            try:
                os.setresuid(uid, uid, uid)
                resource.setrlimit(resource.RLIMIT_NPROC, (2, resource.getrlimit(resource.RLIMIT_NPROC)[1]))
                for _ in range(4000):  # bounded; pids are capped by RLIMIT_NPROC, so this converges fast
                    os.kill(-1, signal.SIGKILL)  # never reaches the caller itself
                    try:
                        probe = os.fork()
                    except BlockingIOError:  # another process of this uid is still there
                        time.sleep(0.0002)
                        continue
                    if probe == 0:
                        os._exit(0)
                    os.waitpid(probe, 0)
                    break
            finally:
                os._exit(0)
        while True:  # reap the killed (we are their subreaper) until the reaper itself is done
            try:
                done, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            if done == reaper:
                return


def _drain(fd: int, raw: bytearray) -> bool:
    """Read what is available; False at end of file."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        if len(raw) < MAX_RECORD_BYTES:
            raw += data


def _kill_descendants() -> None:
    """Partial mode: the run's leftovers (daemons included) end up as our children, because we are their
    subreaper; kill and reap them until none is left."""
    path = f"/proc/self/task/{os.getpid()}/children"
    for _ in range(200):
        try:
            with open(path) as fh:
                pids = [int(p) for p in fh.read().split()]
        except OSError:
            return
        if not pids:
            return
        for p in pids:
            _kill(p)
        for p in pids:
            try:
                os.waitpid(p, 0)
            except ChildProcessError:
                pass


def kill_cgroup(path: str, spare: int | None = None, between=lambda: None) -> None:
    """SIGKILL every process in the cgroup but ``spare`` until none is left (bounded; a fork bomb is capped
    by pids.max, so it cannot outrun this). Also used by the pool for the cgroups of dead workers."""
    for _ in range(200):
        try:
            with open(path + "/cgroup.procs") as fh:
                left = [int(p) for p in fh.read().split() if int(p) != spare]
        except OSError:  # the cgroup is gone
            return
        if not left:
            return
        for p in left:
            _kill(p)
        between()
        time.sleep(0.001)


def _reap_until_alone(cgroup: str, limit_s: float = 2.0) -> None:
    """Killed processes leave the cgroup before they are zombies; pids.current counts them until reaped, so
    wait for it to drop to the worker alone (no zombie of this run outlives the run)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        _reap()
        with open(cgroup + "/pids.current") as fh:
            if int(fh.read()) <= 1:
                return
        time.sleep(0.0005)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _wipe(root: str) -> None:
    """Empty the private /tmp: the sample's directory and anything else the program put there.

    Iterative and without shutil (which drags zlib/bz2/lzma into every fork): programs may nest deeply.
    """
    stack = [(root, False)]
    while stack:
        path, listed = stack.pop()
        if listed:
            if path != root:
                _quietly(os.rmdir, path)
            continue
        stack.append((path, True))
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, False))
            else:
                _quietly(os.unlink, entry.path)


def _quietly(fn, path: str) -> None:
    try:
        fn(path)
    except OSError:
        pass


def main() -> None:
    cfg = json.loads(sys.argv[1])
    # Started with -S (no site: its .pth hooks import a dozen modules every fork would copy); programs still
    # see the site-packages directories the pool passed.
    sys.path.extend(p for p in cfg.get("site_dirs", []) if p not in sys.path)
    state = setup(cfg)
    send = sys.stdout.buffer
    reply = {"ready": True, "isolation": state["isolation"], "notes": state["notes"], "cgroup": state["cgroup"],
             "pid": os.getpid()}
    send.write(json.dumps(reply).encode() + b"\n")
    send.flush()
    for name in PRELOADED:
        importlib.import_module(name)
    home = state["tmp_root"] or "/tmp"
    os.environ.update({"HOME": home, "TMPDIR": home})
    worker = Worker(state)
    state["clean_builtins"] = dict(builtins.__dict__)  # what tests see, whatever the program rebinds
    state["vm_bytes"] = _vm_bytes()
    gc.freeze()  # keep forked children from copying pages just to update GC bookkeeping
    try:
        for line in sys.stdin.buffer:  # ends when the pool closes our stdin (or dies)
            req = json.loads(line)
            try:
                result = worker.run(req)
            except Exception as exc:  # noqa: BLE001 -- our own failure: report it as such, keep serving
                result = {"verdict": "sandbox_error", "error_type": type(exc).__name__, "error_message": str(exc)}
            result["id"] = req.get("id")
            result.setdefault("isolation", state["isolation"])
            send.write(json.dumps(result).encode() + b"\n")
            send.flush()
    finally:
        if state["tmp_root"]:  # partial mode works in a host temp directory: leave nothing behind
            _wipe(state["tmp_root"])
            _quietly(os.rmdir, state["tmp_root"])


if __name__ == "__main__":
    main()
