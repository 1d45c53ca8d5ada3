"""Sandbox worker process: isolates itself once, then runs each program in a short-lived forked child.

Started by :mod:`reward.pool` as ``python -I -S reward/_worker.py CONFIG_JSON``; it speaks JSON lines on
stdin/stdout (one request in, one result out). Standard library only. Isolation set-up and per-run clean-up
live in :mod:`reward._isolation`, the in-child harness (records, verdicts) in :mod:`reward._harness`, the
fork server that forks each child in :mod:`reward._zygote`; this module is the request loop, the deadline
and the clean-up of each run.

Set up once per worker (as root): private network namespace (no interfaces up: loopback and the outside are
unreachable), private mount namespace with a tmpfs (size and inode bound) over /tmp, /var/tmp and /dev/shm,
a pids and a memory cgroup, the seccomp filter, and child-subreaper status. Then the fork server starts inside
bubblewrap (PID, IPC, UTS, cgroup namespaces; a root of read-only binds of the system's software, the
interpreter and site-packages only; the filter; ``no_new_privs``), with commonly used modules imported, so
programs get them free. See :mod:`reward._isolation`.

Per program: compile here (syntax errors end here) -> hand the code over in a memfd -> the fork server
forks (the child inherits the cgroups, namespaces and filter) -> new session -> stdio to /dev/null ->
rlimits (CPU, address space, processes, file size, open files, no core) -> drop to this worker's own
unprivileged uid -> run the program and the tests in-process under an audit hook, in a namespace built from
trusted parts (:mod:`reward._integrity`) -> stream one record per test to a pipe. The worker enforces the
wall-clock deadline, then kills everything of the run left in the cgroup.

Guarantees: a program cannot reach the network, read host files beyond the system's software and the
interpreter, write outside its tmpfs, see host processes, share IPC objects or key rings, signal the
worker or the fork server, exceed the CPU/memory/process/inode/output limits, or stall the worker past its
deadline; the seccomp filter and ``no_new_privs`` hold for every process of the run. Results come only from
records carrying a per-run nonce, written after the tests ran; exiting early, printing success markers,
shadowing builtins, redefining the prompt's helpers (when the pool is given the prompt), patching modules
the tests use, returning objects with their own ``__eq__``, installing hooks, forking, or taking frames
cannot produce "passed" (see :mod:`reward._integrity` for the limits of each).
Non-guarantees: the program shares the process with the harness; Python is not a security boundary, so the
integrity checks close the known ways in, not every conceivable one; kernel exploits are out of scope.
Without root, bubblewrap or namespaces isolation is "partial": rlimits, deadlines, the integrity checks and
killing every leftover process only; the result says so (a program can then kill the fork server: that run
is a ``sandbox_error`` and the server is restarted).
"""

from __future__ import annotations

import ast
import dis
import fcntl
import json
import os
import resource
import select
import signal
import sys
import time

# Run as a script with -I (no script directory on sys.path): make the `reward` package importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reward import _harness, _isolation

del sys.path[0]  # programs do not get our source tree on their path

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Resolved now, before the private /tmp may hide a virtualenv's bin/: the interpreter it links to lives under
# the prefix the isolation exposes. A venv with copied binaries falls back to the prefix's own interpreter.
INTERPRETER = os.path.realpath(sys.executable)
PREFIX_INTERPRETER = os.path.join(
    sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}"
)
# The fork server finds reward/ through /proc/self/fd/5: the source may be under the private /tmp.
PACKAGE_FD = 5
SECCOMP_FD, INFO_FD = 6, 7  # read by bubblewrap before it starts the fork server
FD_TARGETS = (0, 1, 3, 4, PACKAGE_FD, SECCOMP_FD, INFO_FD)
ZYGOTE_START_S = 20.0
MAX_PARENT_COMPILE = 1 << 20  # programs up to 1 MiB are compiled by the worker (bounded time, no fork)


class ForkServerDied(Exception):
    pass


class ForkServer:
    """The worker's end of :mod:`reward._zygote`: start it, submit a run, learn the child's pid and status."""

    def __init__(self, state: dict, site_dirs: list[str], package: int):
        uid = state["uid"]
        self.state = state
        self.site_dirs = site_dirs
        self.package = package  # an O_PATH descriptor of PACKAGE_PARENT, opened before the mounts
        self.sandboxed = state["isolation"] == "full"  # inside bubblewrap: a PID namespace of its own
        self.argv = [
            INTERPRETER if os.path.exists(INTERPRETER) else PREFIX_INTERPRETER,
            "-I",
            "-S",
            f"/proc/self/fd/{PACKAGE_FD}/reward/_zygote.py",
            str(uid) if uid is not None else "-",
            str(state["pids_max"]),
            state["workdir"],
            os.pathsep.join(site_dirs),
            "1" if self.sandboxed else "0",
        ]
        self.pid = 0  # our child: bubblewrap, or the fork server itself without isolation
        self.spare: frozenset[int] = frozenset()  # host pids that stay between runs (bwrap, init, server)
        self.fds: dict[str, int] = {}

    def start(self) -> None:
        command_r, command_w = os.pipe()
        status_r, status_w = os.pipe()
        result_r, result_w = os.pipe()
        info_r, info_w = os.pipe()
        request = os.memfd_create("codealign-request")
        # Above the numbers the server expects (0..4), so that no dup2 below is a no-op keeping close-on-exec.
        ours = {"command": _high(command_w), "status": _high(status_r), "result": _high(result_r)}
        theirs = [_high(fd) for fd in (command_r, status_w, result_w, request)]
        info = {"r": _high(info_r), "w": _high(info_w)}
        # LD_BIND_NOW: resolve every C symbol once in the server, not lazily in each child (a lazy binding
        # writes the GOT page: one more copy-on-write fault per run for each first-called function).
        env = {**os.environ, "LD_BIND_NOW": "1"}
        self.fds = {**ours, "request": theirs[3]}
        try:
            if self.sandboxed:
                self.pid = self._spawn_sandboxed(theirs, info["w"], env)
            else:
                targets = (0, 1, 3, 4, PACKAGE_FD)
                pairs = zip([*theirs, self.package], targets)
                actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in pairs]
                self.pid = os.posix_spawn(self.argv[0], self.argv, env, file_actions=actions)
            os.close(info.pop("w"))
            os.set_blocking(self.fds["result"], False)
            if self._read(self.fds["status"], 1, time.monotonic() + ZYGOTE_START_S) != b"R":
                raise ForkServerDied("the fork server did not start")
            if self.sandboxed:
                self._learn_sandbox(info["r"])
        except (OSError, ForkServerDied, ValueError):
            self.stop()  # nothing half-started stays behind: descriptors closed, process reaped
            raise
        finally:
            for fd in [*theirs[:3], *info.values()]:  # the server's ends: it holds its own copies
                _isolation.quietly(os.close, fd)

    def _spawn_sandboxed(self, theirs: list[int], info_w: int, env: dict) -> int:
        """fork + exec of bubblewrap; the child joins the sandbox's cgroups first, so that everything
        bubblewrap starts is counted there from its first page."""
        argv = (
            _isolation.sandbox_argv(self.state, sys.base_prefix, self.site_dirs, SECCOMP_FD, INFO_FD)
            + self.argv
        )
        pid = os.fork()
        if pid == 0:
            try:
                _isolation.join_cgroups(self.state)
                sources = [*theirs, self.package, self.state["seccomp_fd"], info_w]
                # first out of the way of every target (a source may sit on a lower target's number)
                moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 16) for fd in sources]
                for fd, target in zip(moved, FD_TARGETS):
                    os.dup2(fd, target)
                os.lseek(SECCOMP_FD, 0, os.SEEK_SET)
                os.execve(_isolation.BWRAP, argv, env)
            finally:
                os._exit(127)
        return pid

    def _learn_sandbox(self, info_r: int) -> None:
        """The host pids of bubblewrap's init and of the fork server (its only child): with bubblewrap itself,
        what the clean-up spares. Also the sandbox's idle memory, the base of the memory limit."""
        raw = b""
        while not raw.endswith(b"}") and b"}" not in raw:
            chunk = os.read(info_r, 4096)
            if not chunk:
                break
            raw += chunk
        init = int(json.loads(raw[: raw.index(b"}") + 1])["child-pid"])
        with open(f"/proc/{init}/task/{init}/children") as fh:
            server = [int(p) for p in fh.read().split()]
        if len(server) != 1:
            raise ForkServerDied("the sandbox's fork server was not found")
        self.spare = frozenset({self.pid, init, server[0]})
        if self.state["memory_cgroup"]:
            self.state["memory_base"] = _isolation.read_int(
                self.state["memory_cgroup"], "memory.usage_in_bytes"
            )
            self.state["memory_mb"] = None  # the limit is written again for the next run

    def submit(self, request: tuple) -> int:
        """Start one run; return the child's pid (in the sandbox's PID namespace when sandboxed)."""
        if not self.pid:
            self.start()
        _harness.write_request(self.fds["request"], request)
        try:
            os.write(self.fds["command"], b"x")
        except OSError as exc:  # BrokenPipeError: the server is gone
            raise ForkServerDied(f"the fork server is gone ({exc})") from None
        return int.from_bytes(self._read(self.fds["status"], 4, time.monotonic() + ZYGOTE_START_S), "little")

    def wait_status(self, deadline: float) -> int:
        return int.from_bytes(self._read(self.fds["status"], 4, deadline), "little")

    def _read(self, fd: int, size: int, deadline: float) -> bytes:
        data = b""
        while len(data) < size:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise ForkServerDied("the fork server did not answer in time")
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise ForkServerDied("the fork server exited")
            data += chunk
        return data

    def stop(self) -> None:
        for fd in self.fds.values():
            _isolation.quietly(os.close, fd)
        self.fds = {}
        self.spare = frozenset()
        if self.pid:  # at the end of its command pipe it exits; if it does not, it is killed
            deadline = time.monotonic() + 2.0
            try:
                while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                    if time.monotonic() > deadline:
                        _isolation.kill(self.pid)
                        os.waitpid(self.pid, 0)
                        break
                    time.sleep(0.001)
            except ChildProcessError:  # already reaped with the run's leftovers
                pass
        self.pid = 0


class Worker:
    """Runs one request at a time: compile, have the fork server start the harness, wait under the deadline,
    clean up, judge."""

    def __init__(self, state: dict, server: ForkServer):
        self.state = state
        self.server = server
        self.code_cache: dict[str, tuple] = {}  # test source -> (code, names it uses, modules it imports)
        self.prompt_cache: dict[str, tuple] = {}  # prompt -> (code, entry point) or (None, None)

    def _compiled(self, tests: list[str]) -> tuple[list, frozenset, tuple]:
        codes, names, imports = [], set(), []
        for source in tests:
            entry = self.code_cache.get(source)
            if entry is None:
                if len(self.code_cache) > 4096:
                    self.code_cache.clear()
                code = compile(source, "<test>", "exec", dont_inherit=True)
                entry = self.code_cache[source] = (code, *_names_and_imports(code))
            codes.append(entry[0])
            names.update(entry[1])
            imports += [m for m in entry[2] if m not in imports]
        return codes, frozenset(names), tuple(imports)

    def _prompt(self, prompt: str | None) -> tuple:
        """The prompt compiled on its own, and the name of its last top-level def/class (the entry point);
        (None, None) when there is none or it does not compile alone."""
        if not prompt:
            return None, None
        entry = self.prompt_cache.get(prompt)
        if entry is None:
            if len(self.prompt_cache) > 4096:
                self.prompt_cache.clear()
            entry = (None, None)
            try:
                tree = ast.parse(prompt)
                defs = [
                    n.name
                    for n in tree.body
                    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                ]
                if defs:
                    entry = (compile(tree, "<prompt>", "exec", dont_inherit=True), defs[-1])
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                pass
            self.prompt_cache[prompt] = entry
        return entry

    def run(self, req: dict) -> dict:
        start = time.monotonic()
        try:
            test_codes, test_names, test_imports = self._compiled(req["tests"])
        except SyntaxError as exc:
            return {
                "verdict": "sandbox_error",
                "error_type": "TestSyntaxError",
                "error_message": str(exc),
                "tests_total": len(req["tests"]),
            }
        program = req["program"]
        if len(program) <= MAX_PARENT_COMPILE:
            try:
                program = compile(program, "<string>", "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:  # ValueError: null bytes
                return _harness.syntax_error(exc, len(test_codes), start)
            except (RecursionError, MemoryError):
                pass  # let the child, under its limits, fail on it and classify the error
        prompt, entry = self._prompt(req.get("prompt"))
        limits = {k: req[k] for k in ("timeout_s", "memory_mb", "fail_fast") if k in req}
        nonce = os.urandom(8).hex()
        raw = bytearray()
        pid = 0
        try:
            _isolation.set_memory_limit(self.state, int(limits["memory_mb"]))
            request = (program, prompt, entry, test_codes, test_names, test_imports, nonce, limits)
            pid = self.server.submit(request)
            outcome = self._wait(pid, raw, start + float(req["timeout_s"]))
        except ForkServerDied as exc:
            self._cleanup(pid)
            self.server.stop()  # started again by the next run
            return {
                "verdict": "sandbox_error",
                "error_type": "ForkServerDied",
                "error_message": str(exc),
                "tests_total": len(test_codes),
            }
        self._cleanup(pid)
        _drain(self.server.fds["result"], raw)  # what the run's last processes wrote before they were killed
        outcome["raw"] = bytes(raw)
        if outcome["signal"] == signal.SIGKILL and not outcome["timed_out"] and self.state["memory_cgroup"]:
            kills = _isolation.oom_kills(self.state)
            outcome["oom"] = kills > self.state.get("oom_kills", 0)
            self.state["oom_kills"] = kills
        result = _harness.verdict(len(test_codes), _harness.parse_records(outcome["raw"], nonce), outcome)
        if outcome["exit_code"] == 70 and result["verdict"] == "runtime_error" and not outcome["raw"]:
            result.update(
                verdict="sandbox_error",
                error_type="HarnessSetup",
                error_message="the sandbox could not start the program",
            )
        result["duration_s"] = time.monotonic() - start
        return result

    def _wait(self, pid: int, raw: bytearray, deadline: float) -> dict:
        """Collect the child's records until it ends or the deadline passes (then kill it)."""
        result_fd, status_fd = self.server.fds["result"], self.server.fds["status"]
        timed_out = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([result_fd, status_fd], [], [], remaining)
            if result_fd in ready:
                _drain(result_fd, raw)
            if status_fd in ready:
                break
        if timed_out:
            self._kill_run(pid)
        status = self.server.wait_status(time.monotonic() + 5.0)
        _drain(result_fd, raw)
        return {
            "timed_out": timed_out,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }

    def _kill_run(self, pid: int) -> None:
        """Every process of the run. In the sandbox ``pid`` is a pid of its namespace, meaningless here: the
        run is whatever is in the cgroup (or of the sandbox uid) besides the sandbox's own processes."""
        if not self.server.sandboxed:
            _isolation.killpg(pid)
            _isolation.kill(pid)  # not yet its own process group if it has only just been forked
        elif self.state["cgroup"]:
            _isolation.kill_cgroup(self.state["cgroup"], spare=self.server.spare)
        else:
            self._kill_uid()

    def _cleanup(self, pid: int) -> None:
        if pid and not self.server.sandboxed:
            _isolation.killpg(pid)
        cgroup = self.state["cgroup"]
        if cgroup:
            spare = self.server.spare
            if _isolation.cgroup_size(cgroup) > len(spare):  # most runs leave nothing: one read
                _isolation.kill_cgroup(cgroup, spare=spare, between=_isolation.reap)
                _isolation.reap_until_alone(cgroup, alone=len(spare))
        elif self.state["uid"] is not None:
            self._kill_uid()
        else:
            _isolation.kill_descendants(frozenset({os.getpid(), self.server.pid}))
        _isolation.reap()
        _isolation.wipe_scratch(self.state)

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


def _names_and_imports(code) -> tuple[frozenset, tuple]:
    """Every name a test's code (and the functions it defines) uses, and the modules it imports."""
    names, imports, stack = set(), [], [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        for instruction in dis.get_instructions(current):
            if instruction.opname == "IMPORT_NAME" and instruction.argval not in imports:
                imports.append(instruction.argval)
        stack += [c for c in current.co_consts if isinstance(c, type(code))]
    return frozenset(names), tuple(imports)


def _high(fd: int) -> int:
    """``fd`` moved above 4 (close-on-exec)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return moved


def _drain(fd: int, raw: bytearray) -> bool:
    """Read what is available; False at end of file."""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        if len(raw) < _harness.MAX_RECORD_BYTES:
            raw += data


def main() -> None:
    cfg = json.loads(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # inherited by the fork server, which may not set it
    package = _high(os.open(PACKAGE_PARENT, os.O_PATH | os.O_DIRECTORY))
    state = _isolation.setup(cfg)
    # The site-packages directories the pool passed reach programs through the fork server's sys.path.
    server = ForkServer(state, cfg.get("site_dirs", []), package)
    server.start()
    send = sys.stdout.buffer
    reply = {
        "ready": True,
        "isolation": state["isolation"],
        "notes": state["notes"],
        "cgroup": state["cgroup"],
        "memory_cgroup": state["memory_cgroup"],
        "pid": os.getpid(),
    }
    send.write(json.dumps(reply).encode() + b"\n")
    send.flush()
    worker = Worker(state, server)
    try:
        for line in sys.stdin.buffer:  # ends when the pool closes our stdin (or dies)
            req = json.loads(line)
            try:
                result = worker.run(req)
            except Exception as exc:  # noqa: BLE001 -- our own failure: report it as such, keep serving
                result = {
                    "verdict": "sandbox_error",
                    "error_type": type(exc).__name__,
                    "error_message": str(exc),
                }
            result["id"] = req.get("id")
            result.setdefault("isolation", state["isolation"])
            send.write(json.dumps(result).encode() + b"\n")
            send.flush()
    finally:
        server.stop()
        if state["tmp_root"]:  # partial mode works in a host temp directory: leave nothing behind
            _isolation.wipe(state["tmp_root"])
            _isolation.quietly(os.rmdir, state["tmp_root"])


if __name__ == "__main__":
    main()
