"""The kernel-side syscall filter of a sandbox run, built with libseccomp (``libseccomp.so.2``) via ctypes.

:func:`filter_fd` compiles the filter once per worker into a memfd of classic BPF, which bubblewrap loads
(``bwrap --seccomp FD``) into the fork server just before it starts: every process of every run inherits it,
child interpreters and exec'd programs included (a filter cannot be removed, and ``no_new_privs``, which
bubblewrap always sets, keeps setuid programs from regaining privileges). libseccomp is the library
systemd, Docker and bubblewrap's own users build their filters with; on Debian it is installed with apt
itself. Only five of its functions are used, through ``seccomp_rule_add_array`` (no C varargs).

What it refuses, with ``EPERM``: everything that changes namespaces or mounts (a user namespace would give a
program root inside it), kernel key rings, SysV and POSIX message-queue IPC (no object can outlive a run or
be read by the next one), tracing and reading other processes' memory, ``bpf``, ``perf_event_open``,
``io_uring`` (it bypasses this filter), ``userfaultfd``, kernel modules, clocks, reboot and the other
administration calls, and installing signal handlers (``rt_sigaction``: a Python signal handler receives the
interrupted frame, which would reach the harness). ``clone3`` answers ``ENOSYS`` (its flags live in memory
the filter cannot read; libc then falls back to ``clone``, whose namespace flags are refused). Calls of other
architectures (i386, x32) kill the process. Non-guarantee: it is a deny-list — a syscall the kernel adds
later is allowed until it is listed here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8


def _errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


REFUSED = (
    # namespaces, mounts, root changes
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig",
    "fspick", "move_mount", "open_tree", "mount_setattr",
    # key rings
    "keyctl", "add_key", "request_key",
    # SysV IPC and POSIX message queues
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
    "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
    "mq_getsetattr",
    # other processes, the kernel's internals
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "syslog",
    # administration
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "vhangup", "iopl", "ioperm", "mbind", "migrate_pages", "move_pages",
    "set_mempolicy", "uselib", "personality",
    # signal handlers receive the interrupted frame
    "rt_sigaction",
)  # fmt: skip
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


class SeccompUnavailable(OSError):
    pass


def _library():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(f"libseccomp not found ({exc})") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def filter_fd() -> int:
    """A memfd (offset 0, close-on-exec) holding the compiled filter; raises SeccompUnavailable."""
    lib = _library()
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable("seccomp_init failed")
    try:
        # a binary tree over syscall numbers instead of ~90 comparisons in a row for every syscall
        lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)

        def rule(action: int, name: str, *cmps: _ArgCmp) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a syscall on this architecture
                return
            array = (_ArgCmp * len(cmps))(*cmps) if cmps else None
            ret = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
            if ret < 0:
                raise SeccompUnavailable(f"seccomp_rule_add({name}): {os.strerror(-ret)}")

        for name in REFUSED:
            rule(_errno(errno.EPERM), name)
        rule(_errno(errno.ENOSYS), "clone3")
        for flag in NAMESPACE_FLAGS:
            rule(_errno(errno.EPERM), "clone", _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        fd = os.memfd_create("codealign-seccomp")  # close-on-exec; the worker passes it on explicitly
        ret = lib.seccomp_export_bpf(ctx, fd)
        if ret < 0:
            os.close(fd)
            raise SeccompUnavailable(f"seccomp_export_bpf: {os.strerror(-ret)}")
        os.lseek(fd, 0, os.SEEK_SET)
        return fd
    finally:
        lib.seccomp_release(ctx)
