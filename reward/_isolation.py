"""Sandbox isolation for :mod:`reward._worker`: set up once per worker, clean up after every run.

Standard library and two Debian packages: bubblewrap (``/usr/bin/bwrap``: the sandbox's namespaces and
root file system, around the long-lived fork server, so it costs once per worker) and libseccomp (the
syscall filter, :mod:`reward._seccomp`). Linux; everything needs root except the clean-up of re-parented
leftovers. See :mod:`reward._worker` for what the isolation guarantees.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

from reward import _seccomp

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
# The run's scratch directories: a private tmpfs each (size and inode bound), bound into the sandbox.
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
CGROUP_ROOT = "/sys/fs/cgroup"  # cgroup v1: one hierarchy per controller
BWRAP = "/usr/bin/bwrap"
# Read-only in the sandbox besides the interpreter prefix and site-packages: the system's software, and the
# two files the dynamic loader and time zones read. Nothing else of the host (no /etc, /home, /run, /var,
# /srv, /work...): bubblewrap builds the root from these binds alone.
SYSTEM_DIRS = ("/usr",)
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/localtime")
SANDBOX_PROCESSES = ("bwrap", "init", "fork server")  # what stays in the sandbox's cgroups between runs
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data) -> None:
    args = [s.encode() if s is not None else None for s in (source, target, fstype)]
    _check(_libc.mount(*args, flags, data.encode() if data else None), f"mount {target}")


def _make_cgroups(pids_max: int) -> dict:
    """A pids and a memory cgroup (v1) for this worker's sandbox, created empty: the sandbox joins them when
    it starts (see :func:`join_cgroups`), the worker itself stays outside."""
    found = {}
    for controller in ("pids", "memory"):
        path = os.path.join(CGROUP_ROOT, controller, "codealign", f"w{os.getpid()}")
        try:
            os.makedirs(path, exist_ok=True)
            if controller == "pids":  # + bubblewrap, its init and the fork server
                _write(path, "pids.max", str(pids_max + len(SANDBOX_PROCESSES)))
        except OSError:
            continue
        found[controller] = path
    return found


def _write(path: str, name: str, value: str) -> None:
    fd = os.open(os.path.join(path, name), os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def join_cgroups(state: dict) -> None:
    """In the forked child about to exec bubblewrap: everything it starts inherits these cgroups."""
    for path in (state["cgroup"], state["memory_cgroup"]):
        if path:
            _write(path, "cgroup.procs", str(os.getpid()))


def set_memory_limit(state: dict, memory_mb: int) -> None:
    """One cap over everything a run holds (its processes, tmpfs files, memfds, kernel memory): the sandbox's
    idle usage plus ``memory_mb``. Written only when it changes."""
    path = state["memory_cgroup"]
    if path and state["memory_mb"] != memory_mb:
        try:
            _write(path, "memory.limit_in_bytes", str(state["memory_base"] + memory_mb * (1 << 20)))
        except OSError:  # EBUSY: more is charged than the new limit (page cache not yet reclaimed); next run
            return
        state["memory_mb"] = memory_mb


def read_int(path: str, name: str) -> int:
    fd = os.open(os.path.join(path, name), os.O_RDONLY)
    try:
        return int(os.read(fd, 64))
    finally:
        os.close(fd)


def oom_kills(state: dict) -> int:
    """How many processes the memory cgroup's OOM killer has killed so far."""
    with open(os.path.join(state["memory_cgroup"], "memory.oom_control")) as fh:
        for line in fh:
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    return 0


def sandbox_argv(state: dict, prefix: str, site_dirs: list[str], seccomp_fd: int, info_fd: int) -> list[str]:
    """bubblewrap's command line for the fork server: new PID, IPC, UTS and cgroup namespaces (the
    network namespace is the worker's own, where no interface is up), a root made of read-only binds of the
    system's software, the interpreter and site-packages, a fresh /proc and minimal /dev, the worker's
    private tmpfs directories, only CAP_SETUID/CAP_SETGID (to drop each run to the sandbox uid), the
    seccomp filter, ``no_new_privs`` (bubblewrap always sets it), killed with its parent."""
    argv = [BWRAP, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    argv += ["--die-with-parent", "--hostname", "sandbox"]
    for path in SYSTEM_DIRS:
        argv += ["--ro-bind", path, path]
    for link in MERGED_USR_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for path in SYSTEM_FILES:
        argv += ["--ro-bind-try", path, path]
    made = {"/usr", "/etc"}
    for path in [prefix, *site_dirs]:
        if os.path.isdir(path):
            argv += _traversable_parents(path, made) + ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    made.add("/dev")
    for path in state["scratch"]:
        argv += _traversable_parents(path, made) + ["--bind", path, path]
    argv += ["--chdir", state["workdir"], "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add"]
    argv += ["CAP_SETGID", "--seccomp", str(seccomp_fd), "--info-fd", str(info_fd), "--"]
    return argv


def _traversable_parents(path: str, made: set) -> list[str]:
    """bubblewrap creates a bind's missing parents mode 0700: they are made empty and traversable first."""
    argv, parts = [], path.strip("/").split("/")
    for depth in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:depth])
        if ancestor not in made and not os.path.islink(ancestor):
            made.add(ancestor)
            argv += ["--perms", "0755", "--dir", ancestor]
    return argv


def setup(cfg: dict) -> dict:
    """Isolate this worker once; return what was achieved (``isolation`` full|partial and notes)."""
    notes: list[str] = []
    state = {
        "uid": None,
        "cgroup": None,
        "memory_cgroup": None,
        "memory_mb": None,
        "isolated_fs": False,
        "tmp_root": None,
        "seccomp_fd": None,
    }
    mounted: list[str] = []
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    want = cfg.get("isolate", True)
    missing = _missing_tools() if want and os.geteuid() == 0 else None
    if want and os.geteuid() == 0 and not missing:
        try:
            state["seccomp_fd"] = _seccomp.filter_fd()
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
            _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
            size, inodes = int(cfg.get("tmpfs_mb", 64)), int(cfg.get("tmpfs_inodes", 4096))
            for d in PRIVATE_DIRS:
                if os.path.isdir(d):
                    options = f"size={size}m,nr_inodes={inodes},mode=1777"
                    _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV, options)
                    mounted.append(d)
            state["isolated_fs"] = True
            state["uid"] = int(cfg["uid"])
        except OSError as exc:
            notes.append(f"namespaces unavailable ({exc})")
        if state["isolated_fs"] and cfg.get("cgroup", True):
            cgroups = _make_cgroups(int(cfg.get("pids_max", 64)))
            state["cgroup"], state["memory_cgroup"] = cgroups.get("pids"), cgroups.get("memory")
        if state["isolated_fs"] and state["cgroup"] is None:
            notes.append("no pids cgroup: process cap falls back to RLIMIT_NPROC of the per-worker uid")
        if state["isolated_fs"] and state["memory_cgroup"] is None:
            notes.append("no memory cgroup (v1): the memory cap is per process (RLIMIT_AS)")
    elif want and missing:
        notes.append(f"{missing}: no namespaces, no uid drop")
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


def _missing_tools() -> str | None:
    """Why full isolation cannot be had on this host, or None."""
    if not os.access(BWRAP, os.X_OK):
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    return None


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
