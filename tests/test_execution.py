"""Sandboxed execution: verdicts, partial credit, error location, the batch pool and its failure handling."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reward.execution import ExecutionResult, run_tests
from reward.pool import SandboxPool

ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        yield p


def run(pool, program, tests, **limits):
    limits.setdefault("timeout_s", 2.0)
    return pool.run_batch([(program, tests)], **limits)[0]


def test_passing_program(pool):
    r = run(pool, ADD, ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"])
    assert (r.verdict, r.tests_passed, r.tests_total, r.pass_ratio) == ("passed", 2, 2, 1.0)
    assert r.isolation == ("full" if os.geteuid() == 0 else "partial")


def test_partial_credit_and_first_failure_decides(pool):
    r = run(
        pool,
        "def add(a, b):\n    return a * b\n",
        ["assert add(2, 2) == 4", "assert add(1, 2) == 3, 'one plus two'", "assert add(0, 0) == 0"],
    )
    assert (r.verdict, r.tests_passed, r.tests_total) == ("failed", 2, 3)
    assert r.error_type == "AssertionError" and r.error_message == "one plus two"


def test_fail_fast_stops_at_the_first_failing_test(pool):
    program = "calls = []\ndef add(a, b):\n    calls.append(1)\n    return a * b\n"
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    slow = run(pool, program, tests)
    fast = run(pool, program, tests, fail_fast=True)
    assert (slow.verdict, slow.tests_passed) == ("failed", 1)
    assert (fast.verdict, fast.tests_passed, fast.tests_total) == ("failed", 0, 2)


def test_runtime_error_names_type_and_program_line(pool):
    program = "def f(x):\n    y = 1\n    return x / 0\n"
    r = run(pool, program, ["assert f(1) == 1"])
    assert (r.verdict, r.error_type, r.error_line) == ("runtime_error", "ZeroDivisionError", 3)


def test_syntax_error(pool):
    r = run(pool, "def f(x)\n    return x\n", ["assert f(1) == 1"])
    assert (r.verdict, r.error_type, r.error_line, r.tests_passed) == ("syntax_error", "SyntaxError", 1, 0)


def test_programs_do_not_inherit_our_future_imports(pool):
    # reward/_worker.py has `from __future__ import annotations`; a compile() that inherited it would turn
    # the program's annotations into strings.
    r = run(pool, "def f(x: int) -> int:\n    return x\n", ["assert f.__annotations__['x'] is int"])
    assert r.verdict == "passed"


def test_program_level_exception_runs_no_tests(pool):
    r = run(pool, "raise KeyError('boom')\n", ["assert True"])
    assert (r.verdict, r.error_type, r.tests_passed) == ("runtime_error", "KeyError", 0)


def test_timeout_keeps_tests_finished_before(pool):
    program = "def f(n):\n    while n:\n        pass\n    return 0\n"
    start = time.monotonic()
    r = run(pool, program, ["assert f(0) == 0", "assert f(1) == 0"], timeout_s=0.5)
    assert (r.verdict, r.tests_passed, r.tests_total) == ("timeout", 1, 2)
    assert time.monotonic() - start < 3


def test_memory_cap(pool):
    r = run(pool, "data = bytearray(2 * 1024 ** 3)\n", ["assert True"], memory_mb=128)
    assert r.verdict == "memory_exceeded"


def test_output_is_captured_and_capped(pool):
    program = "print('hello from the program')\nfor _ in range(1000):\n    print('x' * 1000)\n" + ADD
    r = run(pool, program, ["assert add(1, 1) == 2"])
    assert r.verdict == "passed"
    assert r.output.startswith("hello from the program") and len(r.output) <= 4096


def test_batch_keeps_order_and_reports_progress(pool):
    requests = [(ADD, [f"assert add({i}, 1) == {i + 1 if i % 3 else 0}"]) for i in range(30)]
    seen = []
    results = pool.run_batch(requests, timeout_s=2.0, on_result=lambda i, r: seen.append(i))
    assert [r.verdict for r in results] == ["failed" if i % 3 == 0 else "passed" for i in range(30)]
    assert sorted(seen) == list(range(30))


def test_identical_requests_run_once_but_every_index_gets_a_result(pool):
    program = "import os\ndef pid():\n    return os.getpid()\n"
    requests = [(program, ["assert pid() > 0"])] * 3 + [(ADD, ["assert add(1, 1) == 2"])]
    seen = []
    results = pool.run_batch(requests, timeout_s=2.0, on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1, 2, 3] and all(r.passed for r in results)
    assert results[0] == results[1] and results[0] is not results[1]
    separate = pool.run_batch(requests, timeout_s=2.0, dedupe=False)
    assert [r.verdict for r in separate] == ["passed"] * 4


def test_concurrent_batches_from_threads_do_not_mix(pool):
    outputs = {}

    def batch(k: int) -> None:
        outputs[k] = pool.run_batch(
            [(f"X = {k}\n", [f"assert X == {k}"]) for _ in range(5)], timeout_s=2.0, dedupe=False
        )

    threads = [threading.Thread(target=batch, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.passed for k in range(3) for r in outputs[k])


def test_dead_worker_is_replaced_and_batch_continues():
    with SandboxPool(1) as pool:
        victim = pool._workers[0].proc
        killer = threading.Timer(0.5, victim.kill)
        killer.start()
        results = pool.run_batch(
            [("while True:\n    pass\n", []), (ADD, ["assert add(1, 1) == 2"])], timeout_s=3.0
        )
        killer.join()
        assert results[0].verdict == "sandbox_error"
        assert results[1].verdict == "passed"
        assert pool._workers[0].proc is not victim


def test_batch_deadline_bounds_the_whole_call():
    loop = ("while True:\n    pass\n", [])
    with SandboxPool(1) as pool:
        start = time.monotonic()
        results = pool.run_batch([loop] * 4, timeout_s=1.0, batch_timeout_s=1.5, dedupe=False)
        assert time.monotonic() - start < 6
    assert [r.verdict for r in results[:2]] == ["timeout", "timeout"]
    assert results[-1].verdict == "sandbox_error"


def test_a_worker_that_cannot_start_is_reported(tmp_path, monkeypatch):
    from reward import pool as pool_module

    broken = tmp_path / "broken_worker.py"
    broken.write_text("import sys\nsys.exit('cannot isolate: no luck')\n")
    monkeypatch.setattr(pool_module, "WORKER_SCRIPT", str(broken))
    with pytest.raises(RuntimeError, match="cannot isolate: no luck"):
        SandboxPool(1).start()


def test_degraded_isolation_is_explicit():
    with SandboxPool(1, isolate=False) as pool:
        assert pool.isolation == "partial"
        assert pool.notes
        r = pool.run_batch([(ADD, ["assert add(2, 2) == 4"])], timeout_s=2.0)[0]
    assert (r.verdict, r.isolation) == ("passed", "partial")


def test_without_bubblewrap_isolation_is_partial_and_says_why(monkeypatch):
    from reward import _isolation

    monkeypatch.setattr(_isolation, "BWRAP", "/nonexistent/bwrap")
    state = _isolation.setup({"isolate": True, "uid": 200_000})
    try:
        assert state["isolation"] == "partial"
        expected = "bubblewrap is not installed" if os.geteuid() == 0 else "not running as root"
        assert any(expected in note for note in state["notes"]), state["notes"]
    finally:
        os.rmdir(state["tmp_root"])
        _isolation._libc.prctl(_isolation.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)  # setup made us a subreaper


def test_degraded_mode_survives_a_program_killing_the_fork_server():
    # Without the uid drop a program may signal its parent, the fork server: that run is our failure to
    # isolate (sandbox_error, never a verdict on the program) and the next run gets a fresh server.
    killer = "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(0.2)\n" + ADD
    with SandboxPool(1, isolate=False) as pool:
        (first,) = pool.run_batch([(killer, ["assert add(1, 1) == 2"])], timeout_s=2.0)
        (second,) = pool.run_batch([(ADD, ["assert add(1, 1) == 2"])], timeout_s=2.0)
    assert (first.verdict, first.error_type) == ("sandbox_error", "ForkServerDied")
    assert second.verdict == "passed"


DAEMON_WRITING_ITS_PID = (
    "import os, time\n"
    "if os.fork() == 0:\n"
    "    os.setsid()\n"
    "    open('daemon.pid.tmp', 'w').write(str(os.getpid()))\n"
    "    os.rename('daemon.pid.tmp', 'daemon.pid')\n"
    "    time.sleep(60)\n"
)


def test_degraded_mode_still_kills_background_daemons():
    from test_sandbox_hostile import CHILD_INTERPRETER

    program = CHILD_INTERPRETER + f"wait(spawn({DAEMON_WRITING_ITS_PID!r}))\n"
    program += "import time\nwhile not os.path.exists('daemon.pid'):\n    time.sleep(0.01)\n"
    program += "print(open('daemon.pid').read())\n" + ADD
    with SandboxPool(1, isolate=False) as pool:
        r = pool.run_batch([(program, ["assert add(1, 1) == 2"])], timeout_s=2.0)[0]
    assert r.verdict == "passed", r
    daemon = Path(f"/proc/{int(r.output.split()[0])}/status")
    assert not daemon.exists() or "zombie" in daemon.read_text()


def test_db_fields_end_the_output_with_the_error_like_stderr_would(pool):
    r = run(pool, "print('working')\ndef f():\n    return 1 / 0\n", ["f()"])
    assert r.db_fields()["output"] == "working\nZeroDivisionError: division by zero"
    assert run(pool, ADD, ["assert add(1, 1) == 2"]).db_fields()["output"] == ""


def test_run_tests_convenience_and_db_fields():
    r = run_tests(ADD, ["assert add(1, 2) == 3"], timeout_s=2.0)
    assert r.passed
    fields = r.db_fields()
    assert set(fields) == {
        "verdict",
        "tests_passed",
        "tests_total",
        "duration_s",
        "error_type",
        "error_line",
        "output",
        "isolation",
    }


def test_sandbox_error_result_helper():
    r = ExecutionResult.sandbox_error("no worker", tests_total=3)
    assert (r.verdict, r.tests_total, r.pass_ratio) == ("sandbox_error", 3, 0.0)
