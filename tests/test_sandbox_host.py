"""Host isolation, as root (CI runs as root): what a run may hold and see is its own, and the kernel holds
the limits for every process of the run, child interpreters included (they have no audit hook).

Each test is an attack the sandbox once let through; the pool must survive them all.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from test_sandbox_hostile import ADD, ADD_TESTS, CHILD_INTERPRETER

from reward.pool import SandboxPool

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="full isolation needs root")


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(1) as p:
        assert p.isolation == "full", p.notes
        yield p


def run(pool, program, tests=("assert True",), timeout_s=5.0, **limits):
    return pool.run_batch([(program, list(tests))], timeout_s=timeout_s, dedupe=False, **limits)[0]


def in_child(code: str) -> str:
    """A program that runs ``code`` in a fresh interpreter (no audit hook) and prints what it printed."""
    return (
        CHILD_INTERPRETER
        + "r, w = os.pipe()\nos.set_inheritable(w, True)\n"
        + f"pid = spawn('import os\\nos.dup2(' + str(w) + ', 1)\\n' + {code!r}, keep=[w])\n"
        + "os.close(w)\nwait(pid)\nprint(os.read(r, 65536).decode())\n"
    )


LIBC = "import ctypes, ctypes.util\nlibc = ctypes.CDLL(None, use_errno=True)\n"


def test_memfds_count_against_the_memory_cap(pool):
    program = (
        "import os\nfds = []\nfor _ in range(60):\n"
        "    fd = os.memfd_create('x')\n    os.write(fd, b'x' * (16 << 20))\n    fds.append(fd)\n"
    )
    r = run(pool, program + ADD, ADD_TESTS, memory_mb=256)
    assert r.verdict == "memory_exceeded", r
    assert run(pool, ADD, ADD_TESTS, memory_mb=256).verdict == "passed"  # released with the run


def test_child_processes_share_one_memory_cap(pool):
    hog = "import time\nblock = bytearray(150 << 20)\nblock[::4096] = b'x' * len(block[::4096])\ntime.sleep(3)\n"
    program = CHILD_INTERPRETER + (
        f"pids = [spawn({hog!r}) for _ in range(4)]\n"
        "import time\ntime.sleep(1.5)\n"
        "alive = sum(os.waitpid(p, os.WNOHANG) == (0, 0) for p in pids)\n"
        "print('alive', alive)\n"
    )
    r = run(pool, program + ADD, ADD_TESTS, memory_mb=256)
    alive = int(r.output.split()[1])
    assert alive <= 1, r  # 4 x 150 MiB cannot all live under a 256 MiB cap


SHM = LIBC + (
    "libc.shmget.restype = ctypes.c_int\n"
    "print(libc.shmget(0x0C0DE, 1 << 20, 0o1666), ctypes.get_errno())\n"  # IPC_CREAT | 0666
)
KEY = LIBC + (
    "libc.syscall.restype = ctypes.c_long\n"
    "kid = libc.syscall(248, b'user', b'codealign-key', b'secret', 6, -3)\n"  # add_key -> process keyring
    "print(kid, ctypes.get_errno())\n"
)


@pytest.mark.parametrize("code", [SHM, KEY], ids=["SysV shared memory", "kernel key ring"])
def test_ipc_and_key_rings_are_refused(pool, code):
    r = run(pool, in_child(code))
    value, err = r.output.split()[:2]
    assert (int(value), int(err)) == (-1, 1), r  # EPERM from the seccomp filter
    assert "c0de" not in Path("/proc/sysvipc/shm").read_text()


def test_host_unix_sockets_under_run_are_not_reachable(pool):
    path = Path("/run") / f"codealign-{uuid.uuid4().hex[:8]}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    try:
        program = f"import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect({str(path)!r})\n"
        r = run(pool, program)
    finally:
        thread.join()
        server.close()
        path.unlink()
    assert (r.verdict, r.error_type) == ("runtime_error", "FileNotFoundError"), r
    assert accepted == [None]


def _accept(server):
    try:
        return server.accept()
    except OSError:
        return None


def test_proc_shows_no_host_process(pool):
    secret = f"PASSWORD{uuid.uuid4().hex}"
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", secret])
    try:
        program = (
            "import os\nfound, pids = [], [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "for p in pids:\n    try:\n        found.append(open(f'/proc/{p}/cmdline', 'rb').read())\n"
            "    except OSError:\n        pass\n"
            "print(len(pids), b''.join(found).decode(errors='replace'))\n"
        )
        r = run(pool, program)
    finally:
        host.kill()
        host.wait()
    assert r.verdict == "passed", r
    assert secret not in r.output
    # the run itself, bubblewrap's init and the fork server
    assert int(r.output.split()[0]) <= 3, r.output


def test_no_host_data_outside_the_interpreter_tree(pool, tmp_path):
    copy = Path("/var/cache") / f"codealign-{uuid.uuid4().hex[:8]}.db"
    copy.write_text("annotator passwords")
    copy.chmod(0o644)
    repo_file = Path(__file__).resolve()
    try:
        for target in (copy, repo_file, Path("/etc/hostname"), Path("/etc/passwd")):
            r = run(pool, f"print(open({str(target)!r}).read())\n")
            assert (r.verdict, r.error_type) == ("runtime_error", "FileNotFoundError"), (target, r)
    finally:
        copy.unlink()
    listing = run(pool, "import os\nprint(sorted(os.listdir('/')))\n")
    assert not {"home", "run", "srv", "mnt", "opt", "boot"} & set(eval(listing.output))


def test_no_new_privs_and_the_filter_hold_in_every_process(pool):
    r = run(
        pool,
        in_child(
            "print([l for l in open('/proc/self/status') if l.startswith(('NoNewPrivs', 'Seccomp:'))])\n"
        ),
    )
    assert "NoNewPrivs:\\t1" in r.output and "Seccomp:\\t2" in r.output, r.output


@pytest.mark.parametrize(
    ("call", "errno_expected"),
    [
        ("libc.unshare(0x10000000)", 1),  # CLONE_NEWUSER: a user namespace would give root inside it
        # the way out that once worked: a user namespace with a mount namespace, then mount in it
        ("(libc.unshare(0x10020000), libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))[1]", 1),
        ("libc.syscall(250, 0, 0, 0, 0, 0)", 1),  # keyctl
        ("libc.syscall(321, 0, 0, 0)", 1),  # bpf
        ("libc.syscall(101, 0, 1, 0, 0)", 1),  # ptrace(PTRACE_TRACEME)... of pid 1
        ("libc.syscall(298, 0, 0, -1, -1, 0)", 1),  # perf_event_open
        ("libc.syscall(425, 1, 0)", 1),  # io_uring_setup
        ("libc.syscall(435, 0, 0)", 38),  # clone3: ENOSYS, so libc falls back to clone
    ],
    ids=["unshare", "mount", "keyctl", "bpf", "ptrace", "perf_event_open", "io_uring", "clone3"],
)
def test_the_kernel_refuses_in_a_child_interpreter(pool, call, errno_expected):
    r = run(pool, in_child(LIBC + f"print({call}, ctypes.get_errno())\n"))
    value, err = r.output.split()[:2]
    assert (int(value), int(err)) == (-1, errno_expected), r


def test_an_inode_flood_is_bounded(pool):
    program = (
        "import os\nn = 0\ntry:\n    while n < 50_000:\n        open(f'/tmp/f{n}', 'w').close()\n        n += 1\n"
        "except OSError as exc:\n    print(n, exc.errno)\nelse:\n    print(n, 0)\n"
    )
    r = run(pool, program + ADD, ADD_TESTS, timeout_s=10.0)
    created, err = map(int, r.output.split())
    assert created < 5_000 and err == 28, r  # ENOSPC at the tmpfs inode bound
    assert run(pool, "import os\nassert os.listdir('/tmp') == []\n" + ADD, ADD_TESTS).verdict == "passed"


def test_the_pool_survives_and_leaves_nothing(pool):
    assert run(pool, ADD, ADD_TESTS).verdict == "passed"
    (worker,) = pool._workers
    for cgroup in (worker.info["cgroup"], worker.info["memory_cgroup"]):
        assert len(Path(cgroup, "cgroup.procs").read_text().split()) == 3  # bwrap, its init, the fork server
