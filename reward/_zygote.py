"""Fork server of a sandbox worker: forks the child that runs each program and reports how it ended.

Started once by :mod:`reward._worker` (inside the worker's namespaces and cgroup, as root) as
``python -I -S reward/_zygote.py UID PIDS_MAX WORKDIR SITE_DIRS OOM_ADJUST``, in full isolation inside
bubblewrap (see :mod:`reward._isolation`); it never reads a request itself.

Why a process of its own: a fork write-protects every page of the forking process, so the worker, which
decodes requests, compiles and judges between forks, paid a copy-on-write fault for each page it touched
afterwards (measured ~260 per run, as many as the child's own). This loop touches a handful of pages per
fork, and it is a fresh interpreter holding only what programs use, so each fork copies fewer page tables.

Descriptors: 0 command pipe (one byte per run; end of file: exit), 1 status pipe (the child's pid, then its
wait status, 4 bytes each, little-endian; one ``R`` byte once ready), 2 the worker's stderr, 3 the result
pipe's write end (the child's records), 4 the request memfd (see :func:`reward._harness.run_request`), 5
the directory holding ``reward/`` (this script runs as ``/proc/self/fd/5/reward/_zygote.py``: the source may
sit under a /tmp that the worker's private tmpfs now hides); closed once imports are done.
"""

from __future__ import annotations

import builtins
import gc
import importlib
import os
import sys

# Run as a script with -I (no script directory on sys.path): make the `reward` package importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reward import _harness, _integrity

del sys.path[0]  # programs do not get our source tree on their path
PACKAGE_FD = 5

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
COMMAND_FD, STATUS_FD = 0, 1


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    uid, pids_max, workdir, site_dirs, oom_adjust = sys.argv[1:6]
    # Started with -S (no site: its .pth hooks import a dozen modules every fork would copy); programs still
    # see the site-packages directories the pool passed.
    sys.path.extend(p for p in site_dirs.split(os.pathsep) if p and p not in sys.path)
    for name in PRELOADED:
        importlib.import_module(name)
    os.environ.update({"HOME": workdir, "TMPDIR": workdir})
    # LD_BIND_NOW is read by the loader at start-up only: programs see a plain environment.
    os.environ.pop("LD_BIND_NOW", None)
    state = {
        "uid": int(uid) if uid != "-" else None,
        "pids_max": int(pids_max),
        "workdir": workdir,
        "clean_builtins": dict(builtins.__dict__),  # what tests see, whatever the program rebinds
        "vm_bytes": _vm_bytes(),
        "oom_adjust": oom_adjust == "1",
    }
    os.close(PACKAGE_FD)
    _harness.prepare_fork_server(state)
    state["pristine"] = _integrity.snapshot()  # last: modules and types exactly as every run starts
    state["vm_bytes"] = _vm_bytes()
    gc.freeze()  # keep forked children from copying pages just to update GC bookkeeping
    read, write, fork, waitpid, exit_now = os.read, os.write, os.fork, os.waitpid, os._exit
    write(STATUS_FD, b"R")
    while read(COMMAND_FD, 1):
        pid = fork()
        if pid == 0:
            try:
                _harness.run_request(state)
            finally:
                exit_now(70)
        write(STATUS_FD, pid.to_bytes(4, "little"))
        write(STATUS_FD, waitpid(pid, 0)[1].to_bytes(4, "little"))


if __name__ == "__main__":
    main()
