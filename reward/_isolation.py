"""Sandbox isolation for :mod:`reward._worker`: set up once per worker, clean up after every run.

Standard library only (the worker forks from a small interpreter). Linux; everything needs root except the
clean-up of re-parented leftovers. See :mod:`reward._worker` for what the isolation guarantees.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
CGROUP_PIDS_ROOT = "/sys/fs/cgroup/pids"

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
            fh.write(str(pids_max + 2))  # + the worker and its fork server
        with open(os.path.join(path, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    except OSError:
        return None
    return path


def setup(cfg: dict) -> dict:
    """Isolate this worker once; return what was achieved (``isolation`` full|partial and notes)."""
    notes: list[str] = []
    state = {"uid": None, "cgroup": None, "isolated_fs": False, "tmp_root": None}
    mounted: list[str] = []
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
                    mounted.append(d)
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
    # Programs start in an empty scratch directory; everything written to the scratch directories is
    # removed after each run.
    state["workdir"] = "/tmp" if state["isolated_fs"] else state["tmp_root"]
    state["scratch"] = mounted if state["isolated_fs"] else [state["tmp_root"]]
    full = state["isolated_fs"] and state["uid"] is not None
    state["isolation"] = "full" if full else "partial"
    state["notes"] = notes
    state["pids_max"] = int(cfg.get("pids_max", 64))
    return state


def kill_descendants(spare: frozenset[int] = frozenset()) -> None:
    """Partial mode: the run's leftovers (daemons included) end up as our children, because we are their
    subreaper; kill and reap them (all but ``spare``) until none is left."""
    path = f"/proc/self/task/{os.getpid()}/children"
    for _ in range(200):
        try:
            with open(path) as fh:
                pids = [int(p) for p in fh.read().split() if int(p) not in spare]
        except OSError:
            return
        if not pids:
            return
        for p in pids:
            kill(p)
        for p in pids:
            try:
                os.waitpid(p, 0)
            except ChildProcessError:
                pass


def kill_cgroup(path: str, spare: frozenset[int] = frozenset(), between=lambda: None) -> None:
    """SIGKILL every process in the cgroup but those in ``spare`` until none is left (bounded; a fork bomb
    is capped by pids.max, so it cannot outrun this). Also used by the pool for the cgroups of dead workers."""
    for _ in range(200):
        try:
            with open(path + "/cgroup.procs") as fh:
                left = [int(p) for p in fh.read().split() if int(p) not in spare]
        except OSError:  # the cgroup is gone
            return
        if not left:
            return
        for p in left:
            kill(p)
        between()
        time.sleep(0.001)


def cgroup_size(path: str) -> int:
    """Processes in the cgroup, zombies not yet reaped included (``pids.current``)."""
    fd = os.open(path + "/pids.current", os.O_RDONLY)
    try:
        return int(os.read(fd, 32))
    finally:
        os.close(fd)


def reap_until_alone(cgroup: str, alone: int, limit_s: float = 2.0) -> None:
    """Killed processes leave the cgroup before they are zombies; pids.current counts them until reaped, so
    wait for it to drop to the ``alone`` processes that stay (no zombie of this run outlives the run)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        reap()
        if cgroup_size(cgroup) <= alone:
            return
        time.sleep(0.0005)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wipe_scratch(state: dict) -> None:
    """Empty the scratch directories after a run. A private tmpfs that holds nothing (its root is its only
    inode: one statvfs call) is left alone, so a run that wrote no files costs no directory walk."""
    for directory in state["scratch"]:
        if state["isolated_fs"]:
            usage = os.statvfs(directory)
            if usage.f_files - usage.f_ffree <= 1:
                continue
        wipe(directory)


def wipe(root: str) -> None:
    """Empty ``root``: everything a program put there, ``root`` itself kept.

    Iterative (programs may nest deeply) and without shutil (the worker stays standard-library-light).
    """
    stack = [(root, False)]
    while stack:
        path, listed = stack.pop()
        if listed:
            if path != root:
                quietly(os.rmdir, path)
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
                quietly(os.unlink, entry.path)


def quietly(fn, path: str) -> None:
    try:
        fn(path)
    except OSError:
        pass
