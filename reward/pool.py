"""A warm pool of sandbox workers (:mod:`reward._worker`) and the batch API on top of it.

``run_batch([(program, tests), ...], timeout_s=..., memory_mb=...)`` returns one
:class:`~reward.execution.ExecutionResult` per request, in order; a request may be
``(prompt + completion, tests, prompt)`` so that the tests use the prompt's own definitions. Each worker is a fresh ``python -I``
process that isolated itself once and forks one child per program; the pool feeds workers from threads.

Guarantees: results come back in request order; a worker that dies or stops answering is killed (with
everything it started) and replaced, and its request becomes ``sandbox_error``; no request waits longer than
``timeout_s`` + a few seconds, and with ``batch_timeout_s`` the whole batch returns by that deadline (requests
not started by then are ``sandbox_error``). Non-guarantees: ``sandbox_error`` results are not retried; the
isolation level is whatever the host allows (see ``SandboxPool.isolation`` / ``notes``), never silently
weaker: every result carries it.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import json
import logging
import os
import select
import site
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from reward.execution import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, ExecutionResult

log = logging.getLogger(__name__)

WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))
CGROUP_PARENTS = ("/sys/fs/cgroup/pids/codealign", "/sys/fs/cgroup/memory/codealign")
START_TIMEOUT_S = 30.0
GRACE_S = 5.0  # a worker that overruns a request's own deadline by this much is considered hung
UID_BASE = 200_000  # each worker runs programs as its own uid; far above real users


class WorkerDied(Exception):
    pass


class _Worker:
    """One worker process and its line-based protocol."""

    def __init__(self, uid: int, isolate: bool, pids_max: int, tmpfs_mb: int, cgroup: bool):
        self.config = {
            "uid": uid,
            "isolate": isolate,
            "pids_max": pids_max,
            "tmpfs_mb": tmpfs_mb,
            "cgroup": cgroup,
            "site_dirs": site.getsitepackages(),
        }
        self.proc: subprocess.Popen | None = None
        self.info: dict = {}
        self._buffer = b""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", WORKER_SCRIPT, json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,  # only the worker's own crash report (programs' stderr is /dev/null)
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},  # nothing of ours (tokens, keys) leaks in
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the workers mid-run
        )
        self._buffer = b""
        os.set_blocking(self.proc.stdin.fileno(), False)  # see _write
        try:
            self.info = json.loads(self._read_line(time.monotonic() + START_TIMEOUT_S))
        except WorkerDied as exc:
            raise WorkerDied(f"{exc}: {self._stderr_tail()}") from None

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        text = self.proc.stderr.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else "no error output"

    def request(self, payload: dict, deadline: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.restart()
        self._write(json.dumps(payload).encode() + b"\n", deadline)
        return json.loads(self._read_line(deadline))

    def _write(self, data: bytes, deadline: float) -> None:
        """Write under the deadline: a hung worker with a full pipe must not block us forever."""
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerDied("worker stopped reading its requests")
            _, ready, _ = select.select([], [fd], [], remaining)
            if ready:
                try:
                    view = view[os.write(fd, view[: 1 << 16]) :]
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise WorkerDied(f"worker stopped accepting work ({exc})") from None

    def _read_line(self, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerDied("worker did not answer in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise WorkerDied(f"worker exited (code {self.proc.poll()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # a clean end of input: the worker removes its temp files and exits
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        _remove_cgroup(self.info.get("cgroup"))
        _remove_cgroup(self.info.get("memory_cgroup"))
        self.proc = None


def _remove_cgroup(path: str | None) -> None:
    """Kill whatever a dead worker left in its cgroup, then remove the cgroup."""
    if not path or not path.startswith(CGROUP_PARENTS):
        return
    from reward._isolation import kill_cgroup

    kill_cgroup(path)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _remove_stale_cgroups() -> None:
    """Cgroups of workers whose process is gone (a crashed pool) are removed at the next start."""
    for parent in CGROUP_PARENTS:
        try:
            entries = os.listdir(parent)
        except OSError:
            continue
        for name in entries:
            if name.startswith("w") and name[1:].isdigit() and not Path(f"/proc/{name[1:]}").exists():
                _remove_cgroup(os.path.join(parent, name))


_uid_counter = itertools.count()


def _next_uid() -> int:
    """A sandbox uid of its own for each worker: 64 per process (by pid), handed out in turn, so workers of
    concurrent pools (in this process or another) never share one — a shared uid would share RLIMIT_NPROC
    and, without a cgroup, the kill-everything-of-this-uid cleanup."""
    return UID_BASE + (os.getpid() % 10_000) * 64 + next(_uid_counter) % 64


class SandboxPool:
    """``workers`` warm sandbox processes (default: CPU count + 1, so one is always forking).

    ``isolate=False`` forces the degraded mode; ``cgroup=False`` skips the pids and memory cgroups (the
    fallback used on hosts without cgroup v1 controllers: RLIMIT_NPROC, RLIMIT_AS and kill-by-uid).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        isolate: bool = True,
        pids_max: int = 64,
        tmpfs_mb: int = 64,
        cgroup: bool = True,
    ):
        self.size = max(1, workers or (os.cpu_count() or 1) + 1)
        self.isolate, self.pids_max, self.tmpfs_mb, self.cgroup = isolate, pids_max, tmpfs_mb, cgroup
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._pid = os.getpid()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SandboxPool:
        with self._lock:
            if not self._workers:
                _remove_stale_cgroups()
                workers = [
                    _Worker(_next_uid(), self.isolate, self.pids_max, self.tmpfs_mb, self.cgroup)
                    for _ in range(self.size)
                ]
                errors: list[str] = []

                def start(worker: _Worker) -> None:
                    try:
                        worker.start()
                    except (WorkerDied, OSError, ValueError) as exc:
                        errors.append(str(exc))

                threads = [threading.Thread(target=start, args=(w,)) for w in workers]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                self._workers = [w for w in workers if w.info]
                if not self._workers:
                    raise RuntimeError(f"no sandbox worker could start: {errors[0]}")
                if errors:
                    log.warning("%d sandbox worker(s) failed to start: %s", len(errors), errors[0])
        return self

    def close(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers = []

    def __enter__(self) -> SandboxPool:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def isolation(self) -> str:
        """The weakest isolation among the workers: full | partial | none."""
        self.start()
        levels = [w.info.get("isolation", "none") for w in self._workers]
        for level in ("none", "partial"):
            if level in levels:
                return level
        return "full"

    @property
    def notes(self) -> list[str]:
        """Why isolation is degraded, one line per reason (empty when full)."""
        self.start()
        return sorted({note for w in self._workers for note in w.info.get("notes", [])})

    # ------------------------------------------------------------------ work
    def run_batch(
        self,
        requests: Sequence[tuple[str, Sequence[str]] | tuple[str, Sequence[str], str | None]],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        memory_mb: int = DEFAULT_MEMORY_MB,
        fail_fast: bool = False,
        batch_timeout_s: float | None = None,
        on_result: Callable[[int, ExecutionResult], None] | None = None,
        dedupe: bool = True,
    ) -> list[ExecutionResult]:
        """Execute ``(program, tests)`` pairs; results in request order. ``on_result(i, r)`` as each finishes.

        A request may carry the task's prompt as a third element, ``(prompt + completion, tests, prompt)``:
        the tests then take every name the prompt defines from a run of the prompt alone, and only its
        entry point (the prompt's last ``def``/``class``) from the program (see :mod:`reward._integrity`).

        With ``dedupe`` identical requests in the batch run once and share the outcome (GRPO groups often
        repeat a completion); a program whose verdict depends on chance then gets one draw for all copies.
        """
        if timeout_s <= 0 or memory_mb <= 0:
            raise ValueError("timeout_s and memory_mb must be positive")
        if not requests:
            return []
        limits = {
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "fail_fast": fail_fast,
            "batch_timeout_s": batch_timeout_s,
        }
        requests = [_request(r) for r in requests]
        if not dedupe:
            return self._run(requests, on_result=on_result, **limits)
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request, []).append(index)
        unique = list(groups)
        members = list(groups.values())

        def fan_out(j: int, result: ExecutionResult) -> None:
            if on_result is not None:
                for index in members[j]:
                    on_result(index, result)

        results: list[ExecutionResult | None] = [None] * len(requests)
        for j, result in enumerate(self._run(unique, on_result=fan_out, **limits)):
            for index in members[j]:
                results[index] = dataclasses.replace(result)
        return results

    def _run(
        self, requests, *, timeout_s, memory_mb, fail_fast, batch_timeout_s, on_result
    ) -> list[ExecutionResult]:
        with self._batch_lock:  # a worker speaks to one batch at a time; concurrent callers queue here
            return self._run_locked(requests, timeout_s, memory_mb, fail_fast, batch_timeout_s, on_result)

    def _run_locked(self, requests, timeout_s, memory_mb, fail_fast, batch_timeout_s, on_result):
        self.start()
        results: list[ExecutionResult | None] = [None] * len(requests)
        batch_deadline = time.monotonic() + batch_timeout_s if batch_timeout_s else None
        next_index = iter(range(len(requests)))
        take = threading.Lock()

        def serve(worker: _Worker) -> None:
            while True:
                with take:
                    index = next(next_index, None)
                if index is None:
                    return
                program, tests, prompt = requests[index]
                tests = list(tests)
                now = time.monotonic()
                if batch_deadline is not None and now >= batch_deadline:
                    result = ExecutionResult.sandbox_error(
                        "batch deadline exceeded before this run started", len(tests)
                    )
                else:
                    deadline = now + timeout_s + GRACE_S
                    if batch_deadline is not None:
                        deadline = min(deadline, batch_deadline + GRACE_S)
                    payload = {
                        "id": index,
                        "program": program,
                        "tests": tests,
                        "prompt": prompt,
                        "timeout_s": timeout_s,
                        "memory_mb": memory_mb,
                        "fail_fast": fail_fast,
                    }
                    try:
                        result = ExecutionResult.from_worker(worker.request(payload, deadline))
                    except (WorkerDied, ValueError) as exc:
                        log.warning("sandbox worker failed (%s); replacing it", exc)
                        result = ExecutionResult.sandbox_error(f"sandbox worker failed: {exc}", len(tests))
                        try:
                            worker.restart()
                        except (
                            OSError,
                            WorkerDied,
                            ValueError,
                        ) as restart_exc:  # keep serving with the other workers
                            log.error("could not restart a sandbox worker: %s", restart_exc)
                            results[index] = result
                            return
                results[index] = result
                if on_result is not None:
                    with take:
                        on_result(index, result)

        threads = [threading.Thread(target=serve, args=(w,), daemon=True) for w in self._workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [
            r
            if r is not None
            else ExecutionResult.sandbox_error("no sandbox worker available", len(requests[i][1]))
            for i, r in enumerate(results)
        ]


def _request(request: Sequence) -> tuple[str, tuple[str, ...], str | None]:
    """``(program, tests)`` or ``(program, tests, prompt)`` as one hashable form."""
    program, tests, *rest = request
    return program, tuple(tests), (rest[0] if rest else None)


_shared: SandboxPool | None = None
_shared_lock = threading.Lock()


def get_pool(workers: int | None = None, *, isolate: bool = True) -> SandboxPool:
    """The process-wide pool, started on first use (again in a forked child: pools do not survive fork)."""
    global _shared
    with _shared_lock:
        stale = _shared is None or _shared._pid != os.getpid()
        if stale or (workers and workers != _shared.size) or isolate != _shared.isolate:
            if _shared is not None and _shared._pid == os.getpid():
                _shared.close()
            _shared = SandboxPool(workers, isolate=isolate)
        return _shared.start()


def run_batch(requests: Sequence[tuple[str, Sequence[str]]], **limits) -> list[ExecutionResult]:
    """``get_pool().run_batch(requests, **limits)``: see :meth:`SandboxPool.run_batch`."""
    return get_pool().run_batch(requests, **limits)


@atexit.register
def _close_shared() -> None:
    if _shared is not None and _shared._pid == os.getpid():
        _shared.close()
