"""Sandbox worker process: isolates itself once, then forks one short-lived child per program.

Started by :mod:`reward.pool` as ``python -I -S reward/_worker.py CONFIG_JSON``; it speaks JSON lines on
stdin/stdout (one request in, one result out). Standard library only, so it starts fast and forks small.
Isolation set-up and per-run clean-up live in :mod:`reward._isolation`, the in-child harness (records,
verdicts) in :mod:`reward._harness`; this module is the request loop and the fork/wait of each run.

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
results. Python is not a security boundary; kernel exploits are out of scope.
Without root (or namespaces) isolation is "partial": rlimits, deadlines and killing every leftover process
only; the result says so.
"""

from __future__ import annotations

import builtins
import gc
import importlib
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

# Imported before forking so that children find them in sys.modules (fast, and readable after the uid drop).
# Each module makes every fork slower (more pages to map), so only the ones generated code uses most.
PRELOADED = (
    "bisect",
    "collections",
    "copy",
    "functools",
    "heapq",
    "itertools",
    "math",
    "operator",
    "random",
    "re",
    "string",
    "typing",
)
MAX_PARENT_COMPILE = 1 << 20  # programs up to 1 MiB are compiled by the worker (bounded time, no fork)


class Worker:
    """Runs one request at a time: compile, fork the harness, wait under the deadline, clean up, judge."""

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
        self.counter += 1
        root = self.state["tmp_root"] or "/tmp"
        sample_dir = os.path.join(root, f"s{self.counter}")
        nonce = os.urandom(8).hex()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                os.dup2(write_end, _harness.RESULT_FD)
                _harness.run_child(program, test_codes, nonce, limits, sample_dir, self.state)
            finally:
                os._exit(70)
        os.close(write_end)
        outcome = self._wait(pid, read_end, start + float(req["timeout_s"]))
        os.close(read_end)
        self._cleanup(pid)
        result = _harness.verdict(len(test_codes), _harness.parse_records(outcome["raw"], nonce), outcome)
        if outcome["exit_code"] == 70 and result["verdict"] == "runtime_error" and not outcome["raw"]:
            result.update(
                verdict="sandbox_error",
                error_type="HarnessSetup",
                error_message="the sandbox could not start the program",
            )
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
                ready, _, _ = select.select(
                    watch, [], [], remaining if pidfd is not None else min(remaining, 0.005)
                )
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
            _isolation.killpg(pid)
            _, status = os.waitpid(pid, 0)
        return {
            "raw": bytes(raw),
            "timed_out": timed_out,
            "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0,
            "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        }

    def _cleanup(self, pid: int) -> None:
        _isolation.killpg(pid)
        cgroup = self.state["cgroup"]
        if cgroup:
            _isolation.kill_cgroup(cgroup, spare=os.getpid(), between=_isolation.reap)
            _isolation.reap_until_alone(cgroup)
        elif self.state["uid"] is not None:
            self._kill_uid()
        else:
            _isolation.kill_descendants()
        _isolation.reap()
        _isolation.wipe(self.state["tmp_root"] or "/tmp")

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
        if len(raw) < _harness.MAX_RECORD_BYTES:
            raw += data


def main() -> None:
    cfg = json.loads(sys.argv[1])
    # Started with -S (no site: its .pth hooks import a dozen modules every fork would copy); programs still
    # see the site-packages directories the pool passed.
    sys.path.extend(p for p in cfg.get("site_dirs", []) if p not in sys.path)
    state = _isolation.setup(cfg)
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
    for name in PRELOADED:
        importlib.import_module(name)
    home = state["tmp_root"] or "/tmp"
    os.environ.update({"HOME": home, "TMPDIR": home})
    worker = Worker(state)
    state["clean_builtins"] = dict(builtins.__dict__)  # what tests see, whatever the program rebinds
    state["vm_bytes"] = _isolation.vm_bytes()
    gc.freeze()  # keep forked children from copying pages just to update GC bookkeeping
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
        if state["tmp_root"]:  # partial mode works in a host temp directory: leave nothing behind
            _isolation.wipe(state["tmp_root"])
            _isolation.quietly(os.rmdir, state["tmp_root"])


if __name__ == "__main__":
    main()
