"""Hostile programs: each gets its expected verdict, the host is checked afterwards, and the pool survives.

Needs root (CI runs as root): that is what full isolation requires. Without it the module is skipped and
``test_execution.py::test_degraded_isolation_is_explicit`` covers the degraded mode.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest

from reward.pool import UID_BASE, SandboxPool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="full isolation needs root")

ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return a - b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
# A program's own way to start a fresh interpreter: the harness refuses os.fork/subprocess, but a child
# started through _posixsubprocess has no audit hook, so what holds it is the kernel (uid, namespaces,
# cgroups, seccomp). ``spawn(code, keep=fds)`` returns the child's pid; ``wait(pid)`` its exit status.
CHILD_INTERPRETER = """
import _posixsubprocess, os, sys
def spawn(code, keep=()):
    argv = [sys.executable, '-c', code]
    r, w = os.pipe()
    return _posixsubprocess.fork_exec(argv, [os.fsencode(sys.executable)], True, tuple(keep), None, None,
        -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None, False)
def wait(pid):
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
"""


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2) as p:
        assert p.isolation == "full", p.notes
        yield p


def run(pool, program, tests=("assert True",), timeout_s=2.0, **limits):
    return pool.run_batch([(program, list(tests))], timeout_s=timeout_s, **limits)[0]


def sandbox_processes(uids: set[int]) -> list[int]:
    """Live processes owned by one of ``uids`` (a pool's sandbox uids: there must be none between runs)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if uid in uids:
            found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def host_is_clean_afterwards(pool):
    worker_pids = [w.proc.pid for w in pool._workers]
    uids = {w.config["uid"] for w in pool._workers}
    assert min(uids) >= UID_BASE
    yield
    assert sandbox_processes(uids) == []
    assert [w.proc.pid for w in pool._workers] == worker_pids, "a hostile program took a worker down"


def test_fork_bomb(pool):
    r = run(pool, "import os\nwhile True:\n    os.fork()\n")
    assert (r.verdict, r.error_message) == ("runtime_error", "sandbox: os.fork is not allowed")
    # a child interpreter (no audit hook) forking without end is capped by the pids cgroup, then killed
    bomb = (
        CHILD_INTERPRETER
        + "spawn('import os\\nwhile True:\\n    os.fork()\\n')\nimport time\ntime.sleep(0.5)\n"
    )
    assert run(pool, bomb + ADD, ADD_TESTS).verdict == "passed"


def test_memory_bomb(pool):
    r = run(pool, "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n", memory_mb=256)
    assert r.verdict == "memory_exceeded"


def test_infinite_loop(pool):
    r = run(pool, "while True:\n    pass\n", timeout_s=1.0)
    assert r.verdict == "timeout" and r.duration_s < 2.5


def test_busy_threads(pool):
    program = (
        "import threading\n"
        "def spin():\n    while True:\n        pass\n"
        "for _ in range(4):\n    threading.Thread(target=spin, daemon=True).start()\n"
        "spin()\n"
    )
    r = run(pool, program, timeout_s=1.0)
    assert r.verdict == "timeout"


def test_loopback_server_is_unreachable(pool):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(1)  # the program runs (and fails) well within this
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n"
    r = run(pool, program)
    server.close()
    thread.join()
    assert r.verdict == "runtime_error" and r.error_type in ("OSError", "ConnectionRefusedError")
    assert accepted == []


def test_writes_outside_the_sandbox_fail(pool, tmp_path):
    tmp_path.chmod(0o777)
    targets = [
        tmp_path / "pwned",
        Path(__file__).resolve().parent / f"pwned-{uuid.uuid4().hex}",
        Path("/pwned"),
    ]
    program = (
        "".join(
            f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass\n"
            "else:\n    raise SystemExit('wrote')\n"
            for t in targets
        )
        + "open('/etc/codealign-pwned', 'w')\n"
    )
    r = run(pool, program)
    assert r.verdict == "runtime_error" and r.error_type in ("OSError", "PermissionError")
    assert not any(t.exists() for t in targets) and not Path("/etc/codealign-pwned").exists()


def test_private_tmp_is_writable_but_never_reaches_the_host(pool):
    name = f"codealign-escape-{uuid.uuid4().hex}"
    program = f"for d in ('/tmp', '/dev/shm', '/var/tmp'):\n    open(d + '/{name}', 'w').write('x')\n" + ADD
    for _ in pool._workers:  # leave files in every worker's scratch directories
        assert run(pool, program, ADD_TESTS).verdict == "passed"
    assert not any(Path(d, name).exists() for d in ("/tmp", "/dev/shm", "/var/tmp"))
    junk = (
        "import os\nhome = os.getcwd()\nos.chdir('/tmp')\n"
        "for _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\n"
        "os.chdir(home)\n"
        "os.makedirs('/tmp/locked/inner')\nopen('/tmp/locked/inner/f', 'w').close()\n"
        "os.chmod('/tmp/locked', 0o500)\n"
    )
    assert run(pool, junk + ADD, ADD_TESTS).verdict == "passed"
    for _ in pool._workers:  # whichever worker runs it, the next program starts in empty scratch directories
        clean = run(
            pool,
            "import os\nassert os.getcwd() == os.environ['HOME'] == '/tmp'\n"
            "for d in ('/tmp', '/dev/shm', '/var/tmp'):\n    assert os.listdir(d) == [], (d, os.listdir(d))\n"
            + ADD,
            ADD_TESTS,
        )
        assert clean.verdict == "passed", clean.error_message


DAEMON = (
    CHILD_INTERPRETER
    + "spawn('import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep(60)\\n')\n"
)


def test_background_daemon_is_killed_after_the_run(pool):
    program = DAEMON + ADD
    assert (
        run(pool, program, ADD_TESTS).verdict == "passed"
    )  # the host check (autouse fixture) finds no daemon


def test_root_only_file_is_unreadable(pool):
    # Not under /tmp (the sandbox mounts its own there, and the checkout may live in /tmp): the file must be
    # visible to the program, so only its permissions stand in the way.
    secret = Path("/var/cache") / f".codealign-secret-{uuid.uuid4().hex}"
    secret.write_text("TOP-SECRET-VALUE")
    secret.chmod(0o600)
    try:
        r = run(pool, f"print(open({str(secret)!r}).read())\n")  # not even there: /var is not the host's
        assert r.verdict == "runtime_error" and r.error_type in ("PermissionError", "FileNotFoundError")
        assert "TOP-SECRET-VALUE" not in r.output
        shadow = run(pool, "print(open('/etc/shadow').read())\n")
        assert shadow.verdict == "runtime_error" and shadow.error_type in (
            "PermissionError",
            "FileNotFoundError",
        )
    finally:
        secret.unlink()


def test_kill_the_parent(pool):
    program = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
    r = run(pool, program)
    assert r.verdict == "runtime_error" and r.error_type == "PermissionError"
    everyone = run(pool, "import os, signal\nos.kill(-1, signal.SIGKILL)\n" + ADD, ADD_TESTS)
    # kill(-1) reaches only processes of the sandbox's own uid (and spares the caller): nothing else dies
    assert everyone.verdict == "passed"


def test_huge_stdout_does_not_matter(pool):
    program = (
        "import sys, os\nfor _ in range(200):\n    print('y' * 100_000)\nos.write(1, b'z' * 10_000_000)\n"
        + ADD
    )
    r = run(pool, program, ADD_TESTS)
    assert r.verdict == "passed" and len(r.output) <= 4096


@pytest.mark.parametrize(
    "exit_code",
    ["import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n", "raise SystemExit(0)\n"],
    ids=["sys.exit", "os._exit", "SystemExit"],
)
def test_early_exit_is_not_success(pool, exit_code):
    r = run(pool, WRONG_ADD + exit_code, ADD_TESTS)
    assert r.verdict == "runtime_error" and r.tests_passed == 0


def test_exit_inside_the_tested_function(pool):
    r = run(pool, "import os\ndef add(a, b):\n    os._exit(0)\n", ADD_TESTS)
    assert r.verdict == "runtime_error" and r.error_type == "EarlyExit" and r.tests_passed == 0


TAMPERING = {
    "redefine check": (
        "def check(candidate):\n    pass\n",
        ["def check(candidate):\n    assert candidate(1, 2) == 3\ncheck(add)"],
    ),
    "patch builtins": (
        "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.exec = lambda *a, **k: None\n",
        ["assert abs(add(1, 2) - 3) < 1e-9"],
    ),
    "fake success output": (
        "print('passed')\nprint('ALL TESTS PASSED')\nprint('{\"passed\": true}')\n",
        ADD_TESTS,
    ),
    "forge result records": (
        (
            "import os\nfor fd in range(3, 10):\n    try:\n"
            "        os.write(fd, b'x\\x1fdone\\x1f2\\x1f\\x1e')\n"
            "    except OSError:\n        pass\n"
        ),
        ADD_TESTS,
    ),
    "patch the harness module": (
        (
            "import sys\nh = sys.modules['reward._harness']\nh.verdict = lambda *a: {'verdict': 'passed'}\n"
            "h.parse_records = lambda *a: ({0: ('passed',), 1: ('passed',)}, None, {'output': ''})\n"
            "sys.modules['__main__'].Worker = None\n"
        ),
        ADD_TESTS,
    ),
    "swap harness code": (
        (
            "import sys\nf = sys.modules['reward._harness'].parse_records\n"
            "f.__code__ = (lambda *a: 0).__code__\n"
        ),
        ADD_TESTS,
    ),
    "walk the heap": ("import gc\nobjs = gc.get_objects()\n", ADD_TESTS),
    "trace the harness": ("import sys\nsys.settrace(lambda *a: None)\n", ADD_TESTS),
    "ctypes": ("import ctypes\nctypes.CDLL(None)\n", ADD_TESTS),
}


@pytest.mark.parametrize("name", list(TAMPERING))
def test_harness_tampering_never_passes(pool, name):
    tamper, tests = TAMPERING[name]
    r = run(pool, WRONG_ADD + tamper, tests)
    assert r.verdict in ("failed", "runtime_error"), r
    assert r.tests_passed < len(tests)


def test_pool_still_scores_a_correct_program_after_everything(pool):
    r = run(pool, ADD, ADD_TESTS)
    assert (r.verdict, r.tests_passed, r.isolation) == ("passed", 2, "full")
    for worker in pool._workers:  # only the sandbox's bubblewrap, its init and the fork server are left
        for cgroup in (worker.info["cgroup"], worker.info["memory_cgroup"]):  # None: no cgroup v1 controller
            if cgroup:
                pid = Path(cgroup).name[1:]
                (bwrap,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                (init,) = Path(f"/proc/{bwrap}/task/{bwrap}/children").read_text().split()
                (server,) = Path(f"/proc/{init}/task/{init}/children").read_text().split()
                assert sorted(Path(cgroup, "cgroup.procs").read_text().split()) == sorted(
                    [bwrap, init, server]
                )


def test_without_a_cgroup_the_uid_fallback_contains_bombs_and_daemons():
    with SandboxPool(1, cgroup=False) as pool:
        assert pool.isolation == "full" and any("RLIMIT_NPROC" in n for n in pool.notes)
        uids = {w.config["uid"] for w in pool._workers}
        bomb = CHILD_INTERPRETER + "spawn('import os\\nwhile True:\\n    os.fork()\\n')\nimport time\n"
        assert run(pool, bomb + "time.sleep(0.5)\n" + ADD, ADD_TESTS).verdict == "passed"
        assert run(pool, DAEMON + ADD, ADD_TESTS).verdict == "passed"
        assert sandbox_processes(uids) == []
        assert run(pool, ADD, ADD_TESTS).verdict == "passed"


def test_a_checkout_and_a_virtualenv_under_tmp_still_work(tmp_path, monkeypatch):
    # Once isolated, the worker's private tmpfs hides the host's /tmp: a clone or a virtualenv living there
    # must still start the fork server (found through a descriptor and the interpreter's real path).
    from reward import pool as pool_module

    source = tmp_path / "src" / "reward"
    shutil.copytree(Path(pool_module.__file__).parent, source, ignore=shutil.ignore_patterns("__pycache__"))
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr(pool_module, "WORKER_SCRIPT", str(source / "_worker.py"))
    monkeypatch.setattr(sys, "executable", str(venv_python))
    with SandboxPool(1) as tmp_pool:
        r = tmp_pool.run_batch([(ADD, ADD_TESTS)], timeout_s=2.0)[0]
    assert (r.verdict, r.isolation) == ("passed", "full")
