"""Sandbox worker process: isolates itself once, then runs each program in a short-lived forked child.

Started by :mod:`reward.pool` as ``python -I -S reward/_worker.py CONFIG_JSON``; it speaks JSON lines on
stdin/stdout (one request in, one result out). Standard library only. Isolation set-up and per-run clean-up
live in :mod:`reward._isolation`, the in-child harness (records, verdicts) in :mod:`reward._harness`, the
fork server that forks each child in :mod:`reward._zygote`; this module is the request loop, the deadline
and the clean-up of each run.

Set up once per worker (as root): private network namespace (no interfaces up: loopback and the outside are
unreachable), private mount namespace with tmpfs over /tmp, /var/tmp, /dev/shm and /run/lock, the root file
system remounted read-only, directories only root can traverse (e.g. ``/root`` holding the interpreter)
replaced by a tmpfs that exposes just the interpreter prefix, a ``pids`` cgroup, and child-subreaper status
so orphans come back to us. Then the fork server starts inside all of that, with commonly used modules
imported, so programs get them free.

Per program: compile here (syntax errors end here) -> hand the code over in a memfd -> the fork server
forks (the child inherits the cgroup) -> new session -> stdio to /dev/null -> rlimits (CPU, address space,
processes, file size, open files, no core) -> drop to this worker's own unprivileged uid -> run the program
and the tests in-process under an audit hook -> stream one record per test to a pipe. The worker enforces
the wall-clock deadline, then kills the process group and everything left in the cgroup.

Guarantees: a program cannot reach the network, write outside its tmpfs, read files only root may read,
signal the worker or the fork server, exceed the CPU/memory/process/output limits, or stall the worker past
its deadline. Results come only from records carrying a per-run nonce, written after the tests ran; exiting
early, printing success markers, redefining ``check``/helpers or builtins the tests use, or tampering with
the harness functions cannot produce "passed".
Non-guarantees: the program shares the process with the harness. The audit hook blocks ``gc`` heap walks,
``ctypes``, tracing and ``__code__`` swaps, but frames stay reachable (the standard library needs
``sys._getframe``), so a program written to walk up to the harness's frame can read the nonce and forge
results. Python is not a security boundary; kernel exploits are out of scope.
Without root (or namespaces) isolation is "partial": rlimits, deadlines and killing every leftover process
only; the result says so (a program can then kill the fork server: that run is a ``sandbox_error`` and the
server is restarted).
"""

from __future__ import annotations

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
ZYGOTE_START_S = 20.0
MAX_PARENT_COMPILE = 1 << 20  # programs up to 1 MiB are compiled by the worker (bounded time, no fork)


class ForkServerDied(Exception):
    pass


class ForkServer:
    """The worker's end of :mod:`reward._zygote`: start it, submit a run, learn the child's pid and status."""

    def __init__(self, state: dict, site_dirs: list[str], package: int):
        uid = state["uid"]
        self.package = package  # an O_PATH descriptor of PACKAGE_PARENT, opened before the mounts
        self.argv = [
            INTERPRETER if os.path.exists(INTERPRETER) else PREFIX_INTERPRETER,
            "-I",
            "-S",
            f"/proc/self/fd/{PACKAGE_FD}/reward/_zygote.py",
            str(uid) if uid is not None else "-",
            str(state["pids_max"]),
            state["workdir"],
            os.pathsep.join(site_dirs),
        ]
        self.pid = 0
        self.fds: dict[str, int] = {}

    def start(self) -> None:
        command_r, command_w = os.pipe()
        status_r, status_w = os.pipe()
        result_r, result_w = os.pipe()
        request = os.memfd_create("codealign-request")
        # Above the numbers the server expects (0..4), so that no dup2 below is a no-op keeping close-on-exec.
        ours = {"command": _high(command_w), "status": _high(status_r), "result": _high(result_r)}
        theirs = [_high(fd) for fd in (command_r, status_w, result_w, request)]
        targets = (0, 1, 3, 4, PACKAGE_FD)
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for fd, target in zip([*theirs, self.package], targets)]
        # LD_BIND_NOW: resolve every C symbol once in the server, not lazily in each child (a lazy binding
        # writes the GOT page: one more copy-on-write fault per run for each first-called function).
        env = {**os.environ, "LD_BIND_NOW": "1"}
        self.fds = {**ours, "request": theirs[3]}
        try:
            self.pid = os.posix_spawn(self.argv[0], self.argv, env, file_actions=actions)
            os.set_blocking(self.fds["result"], False)
            if self._read(self.fds["status"], 1, time.monotonic() + ZYGOTE_START_S) != b"R":
                raise ForkServerDied("the fork server did not start")
        except (OSError, ForkServerDied):
            self.stop()  # nothing half-started stays behind: descriptors closed, process reaped
            raise
        finally:
            for fd in theirs[:3]:  # the server's ends: it holds its own copies
                os.close(fd)

    def submit(self, program, tests: list, nonce: str, limits: dict) -> int:
        """Start one run; return the child's pid."""
        if not self.pid:
            self.start()
        _harness.write_request(self.fds["request"], program, tests, nonce, limits)
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
        limits = {k: req[k] for k in ("timeout_s", "memory_mb", "fail_fast") if k in req}
        nonce = os.urandom(8).hex()
        raw = bytearray()
        pid = 0
        try:
            pid = self.server.submit(program, test_codes, nonce, limits)
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
            _isolation.killpg(pid)
            _isolation.kill(pid)  # not yet its own process group if it has only just been forked
        status = self.server.wait_status(time.monotonic() + 5.0)
        _drain(result_fd, raw)
        return {
            "timed_out": timed_out,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }

    def _cleanup(self, pid: int) -> None:
        if pid:
            _isolation.killpg(pid)
        spare = frozenset({os.getpid(), self.server.pid})
        cgroup = self.state["cgroup"]
        if cgroup:
            if _isolation.cgroup_size(cgroup) > len(spare):  # most runs leave nothing: one read
                _isolation.kill_cgroup(cgroup, spare=spare, between=_isolation.reap)
                _isolation.reap_until_alone(cgroup, alone=len(spare))
        elif self.state["uid"] is not None:
            self._kill_uid()
        else:
            _isolation.kill_descendants(spare)
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
