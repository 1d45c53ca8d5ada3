"""The in-child harness of :mod:`reward._worker`: runs a program and its tests, streams one record per test.

Records are ``nonce FIELD ... RECORD`` text on ``RESULT_FD``; :func:`parse_records` keeps only this run's
(nonce) and :func:`verdict` turns them and the child's exit status into the result fields. Standard library
only. See :mod:`reward._worker` for the anti-cheating guarantees and their limits.
"""

from __future__ import annotations

import builtins
import io
import marshal
import os
import resource
import signal
import sys
import time
import types

from reward import _integrity

RESULT_FD = 3
REQUEST_FD = 4  # memfd: 8-byte length + marshal of a Request tuple (see write_request)
FIELD, RECORD = "\x1f", "\x1e"
MAX_RECORD_BYTES = 1 << 20
OUTPUT_LIMIT = 4096
# Events by which a program would observe or rewrite the harness and the tests: the run is ``failed`` with the
# event named (raising from an audit hook also keeps a program's own ``sys.addaudithook`` from taking effect).
HACK_EVENTS = frozenset(
    {
        "sys.addaudithook",
        "sys._current_frames",
        "sys.settrace",
        "sys.setprofile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",
    }
)
# Allowed only when the code asking is trusted (see reward._integrity.snapshot): frames, and marshal.loads
# (the import system loads .pyc files with it; hand-made bytecode would read memory it should not).
CALLER_CHECKED = frozenset({"sys._getframe", "marshal.loads"})
# Refused as capabilities (a RuntimeError the program sees): new processes, and ctypes (by prefix). A
# process started some other way (``_posixsubprocess``) is a fresh interpreter without this hook, held
# by the kernel: seccomp filter, namespaces, uid.
REFUSED_EVENTS = frozenset(
    {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "subprocess.Popen"}
)
HARNESS_MODULES = ("reward", "reward._harness", "reward._integrity")
REFUSED_MODULES = frozenset({"_testcapi", "_testinternalcapi", "_testbuffer", "_xxsubinterpreters"})


class _CappedText(io.TextIOBase):
    """stdout/stderr for programs: keeps the first bytes, drops the rest (huge output costs nothing)."""

    def __init__(self, limit: int):
        self.parts: list[str] = []
        self.room = limit

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        if self.room > 0:
            self.parts.append(s[: self.room])
            self.room -= len(s)
        return len(s)

    def text(self) -> str:
        return "".join(self.parts)


def prepare_fork_server(state: dict) -> None:
    """The limits every run shares, set once in the fork server and inherited by each child (none of them
    hinders the server, which runs as root and writes only to pipes): file size, descriptors, no core dump,
    SIGXFSZ ignored (oversized writes fail with an error instead of killing), no supplementary groups and,
    once a child drops to the sandbox uid, the process cap (not enforced for root)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except OSError:  # the seccomp filter refuses rt_sigaction: the worker set SIG_IGN before exec
        pass
    if state["uid"] is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (state["pids_max"], state["pids_max"]))
        os.setgroups([])


def write_request(fd: int, request: tuple) -> None:
    """The worker's half of :func:`run_request`: code objects travel marshalled (loading is far cheaper
    than compiling in the child, where every page the compiler touches is a copy-on-write fault).
    ``request`` is ``(program, prompt, entry, tests, test_names, test_imports, nonce, limits)``."""
    blob = marshal.dumps(request)
    os.pwrite(fd, len(blob).to_bytes(8, "little") + blob, 0)


def run_request(state: dict) -> None:
    """Runs in the child forked by :mod:`reward._zygote`: reads this run's request, then :func:`run_child`
    (which closes the request descriptor before the program starts)."""
    size = int.from_bytes(os.pread(REQUEST_FD, 8, 0), "little")
    run_child(*marshal.loads(os.pread(REQUEST_FD, size, 8)), state)


def run_child(program, prompt, entry, tests, test_names, test_imports, nonce, limits, state) -> None:
    """Runs in the forked child; never returns. Every name it uses after the program starts is a local.

    ``program`` is normally a code object compiled by the worker (compiling here would pay copy-on-write
    faults for every page the compiler touches: ~1 ms); source text only for oversized programs.
    ``prompt`` (a code object or None) is the task's own code, run alone for the tests' namespace, with
    ``entry`` the name the tests take from the program. ``test_names`` are all names the tests' code uses,
    ``test_imports`` the modules it imports. Expects the result pipe on ``RESULT_FD``; every descriptor
    above it is closed before the program runs.
    """
    # Programs may rebind builtins or module attributes; the harness only uses what it captured here.
    write, exit_now, exec_, compile_, dict_, type_ = os.write, os._exit, exec, compile, dict, type
    isinstance_, str_, len_, enumerate_, runtime_error = isinstance, str, len, enumerate, RuntimeError
    BaseException_, SyntaxError_, ValueError_ = BaseException, SyntaxError, ValueError
    MemoryError_, AssertionError_, FunctionType = MemoryError, AssertionError, types.FunctionType
    getframe, patched_module, checked = sys._getframe, _integrity.patched_module, _integrity.checked
    redefinitions = _integrity.redefinitions
    hack_events, refused_events, refused_modules = HACK_EVENTS, REFUSED_EVENTS, REFUSED_MODULES
    caller_checked = CALLER_CHECKED
    frame_attrs = _integrity.FRAME_ATTRS
    pristine = state["pristine"]
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(RESULT_FD + 1, 1 << 16)
    if state["oom_adjust"]:  # the memory cgroup's OOM killer takes the run's processes, never the fork server
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
        os.write(fd, b"1000")
        os.close(fd)
    cpu = int(limits["timeout_s"]) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    mem = state["vm_bytes"] + int(limits["memory_mb"]) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    for name in test_imports:  # imported now, pristine, so that the program cannot bring its own
        if name not in sys.modules:
            try:
                __import__(name)
            except BaseException_:
                pass
    _integrity.extend(pristine, test_imports)
    uid = state["uid"]
    if uid is not None:
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # also makes the process non-dumpable: its /proc/self/mem is root's
    os.chdir(state["workdir"])  # empty (wiped after every run); HOME and TMPDIR name it too
    out = _CappedText(OUTPUT_LIMIT)
    sys.stdout = sys.stderr = out
    sys.stdin = io.StringIO("")
    clean_builtins = state["clean_builtins"]
    trusted_frames = pristine["frame_codes"]
    known_types, code_dirs = pristine["types"], pristine["code_dirs"]
    hacks: list[str] = []
    busy: list[int] = []

    def emit(*fields) -> None:
        text = FIELD.join(str_(f).replace(RECORD, " ").replace(FIELD, " ") for f in (nonce, *fields)) + RECORD
        data = text.encode("utf-8", "replace")
        while data:
            data = data[write(RESULT_FD, data) :]

    def describe(exc) -> tuple:
        """(kind, type name, program line, message) of an exception."""
        line, tb = "", exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == "<string>":
                line = tb.tb_lineno
            tb = tb.tb_next
        if isinstance_(exc, SyntaxError_) and exc.filename == "<string>":
            line = exc.lineno or ""
        try:
            message = str_(exc)[:2000]  # runs the program's __str__: still under the audit hook
        except BaseException_:
            message = "<unprintable>"
        if isinstance_(exc, MemoryError_):
            kind = "memory_exceeded"
        elif isinstance_(exc, AssertionError_):
            kind = "failed"
        else:
            kind = "runtime_error"
        return kind, type_(exc).__name__, line, message

    trusted_frames = trusted_frames | {describe.__code__}

    def audit(event, args) -> None:
        if busy:  # our own getframe below
            return
        if event in caller_checked or (event == "object.__getattr__" and args[1] in frame_attrs):
            busy.append(1)
            try:
                caller = getframe(1).f_code
            finally:
                busy.pop()
            if caller in trusted_frames:
                return
            event = f"{event} {args[1]}" if event == "object.__getattr__" else event
            hacks.append(f"the program used {event}: frames and bytecode reach the tests and the harness")
            raise runtime_error(f"sandbox: {event} is not available to programs")
        if event in hack_events:
            hacks.append(f"the program used {event}, which would observe or rewrite its tests")
            raise runtime_error(f"sandbox: {event} is not allowed")
        if event in refused_events or event.startswith("ctypes."):
            raise runtime_error(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in refused_modules:
            raise runtime_error(f"sandbox: importing {args[0]} is not allowed")
        if event == "object.__setattr__" and args[1] == "__code__":
            hacks.append("the program replaced a function's __code__")
            raise runtime_error("sandbox: replacing __code__ is not allowed")

    def stop_if_hacked(namespace) -> None:
        """A hack seen, or a module the tests use patched: the run is failed, no test counts."""
        if not hacks:
            where = patched_module(pristine, test_names, namespace)
            if where is not None:
                hacks.append(f"tests must not see a patched module ({where})")
        if hacks:
            emit("program", "failed", "RewardHack", "", hacks[0], out.text())
            exit_now(0)

    sys.addaudithook(audit)
    try:
        code = program if not isinstance_(program, str_) else compile_(program, "<string>", "exec", 0, True)
    except BaseException_ as exc:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
        kind, etype, line, message = describe(exc)
        if isinstance_(exc, (SyntaxError_, ValueError_)):
            kind = "syntax_error"
        emit("program", kind, etype, line, message, "")
        exit_now(0)
    trusted = None
    if prompt is not None:  # the task's own definitions, run before the program can touch anything
        trusted = {"__name__": "__main__", "__builtins__": clean_builtins}
        try:
            exec_(prompt, trusted)
        except BaseException_:
            trusted = None
    # The program is __main__ (as a script would be), and the harness's own modules are out of its reach:
    # nothing it can import or find in sys.modules leads to the code that judges it.
    main = types.ModuleType("__main__")
    program_globals = vars(main)
    program_globals["__builtins__"] = builtins
    for name in HARNESS_MODULES:
        sys.modules.pop(name, None)
    sys.modules["__main__"] = main
    try:
        exec_(code, program_globals)
    except BaseException_ as exc:
        kind, etype, line, message = describe(exc)
        if not hacks:
            emit("program", kind, etype, line, message, out.text())
            exit_now(0)
    # The tests' namespace, from trusted parts: the prompt's definitions (else the program's), the entry point
    # from the program, program functions the tests call wrapped to return plain data only, builtins the
    # program shadows left out (tests resolve them in the pristine copy).
    source = program_globals
    if trusted is not None and entry in program_globals:
        source = {**trusted, entry: program_globals[entry]}
    base, shadowed = {}, []
    for key, value in source.items():
        if key in test_names and key[:2] != "__":
            if key in clean_builtins and value is not clean_builtins[key] and key != entry:
                shadowed.append(key)
                continue
            if isinstance_(value, FunctionType) and value.__code__.co_filename == "<string>":
                value = checked(value, key, known_types, code_dirs)
        base[key] = value
    base["__builtins__"] = clean_builtins
    stop_if_hacked(base)
    for index, test_code in enumerate_(tests):
        test_globals = dict_(base)
        try:
            exec_(test_code, test_globals)
        except BaseException_ as exc:
            stop_if_hacked(test_globals)
            kind, etype, line, message = describe(exc)
            if shadowed:
                message = f"tests must not see a redefined builtin ({', '.join(shadowed)}): {message}"
            elif source is not program_globals and kind == "failed":
                redefined = redefinitions(trusted, program_globals, entry, test_names)
                if redefined:
                    message = f"tests use the prompt's {', '.join(redefined)}, not the program's: {message}"
            emit("test", index, kind, etype, line, message)
            if limits.get("fail_fast"):
                break
        else:
            stop_if_hacked(test_globals)
            emit("test", index, "passed", "", "", "")
    emit("done", len_(tests), out.text())
    exit_now(0)


def parse_records(raw: bytes, nonce: str) -> tuple[dict, dict | None, dict | None]:
    """Records of this run (others are forged or truncated and ignored): tests, program error, done."""
    tests: dict[int, tuple] = {}
    program = done = None
    for chunk in raw.decode("utf-8", "replace").split(RECORD):
        fields = chunk.split(FIELD)
        if len(fields) < 2 or fields[0] != nonce:
            continue
        tag = fields[1]
        if tag == "test" and len(fields) == 7 and fields[2].isdigit():
            tests.setdefault(int(fields[2]), tuple(fields[3:]))
        elif tag == "program" and len(fields) == 7 and program is None:
            program = dict(zip(("kind", "etype", "line", "message", "output"), fields[2:]))
        elif tag == "done" and len(fields) == 4:
            done = {"output": fields[3]}
    return tests, program, done


def _line(value: str) -> int | None:
    return int(value) if value and value.isdigit() else None


def verdict(tests_total: int, records, outcome: dict) -> dict:
    tests, program, done = records
    passed = sum(1 for r in tests.values() if r[0] == "passed")
    result = {
        "tests_passed": passed,
        "tests_total": tests_total,
        "error_type": None,
        "error_line": None,
        "error_message": "",
        "output": "",
    }
    if program is not None:
        result.update(
            verdict=program["kind"],
            error_type=program["etype"],
            error_line=_line(program["line"]),
            error_message=program["message"],
            output=program["output"],
            tests_passed=0,
        )
        return result
    if done is None and outcome["timed_out"]:
        result.update(verdict="timeout", error_type="Timeout", error_message="timed out")
        return result
    if done is None:
        sig = outcome["signal"]
        if outcome.get("oom"):
            result.update(
                verdict="memory_exceeded",
                error_type="MemoryLimit",
                error_message="killed at the memory limit (everything the run held counts)",
            )
        elif sig == signal.SIGXCPU:
            result.update(verdict="timeout", error_type="CPUTimeLimit", error_message="timed out")
        elif sig:  # SIGKILL included: without a memory cgroup it is the program (or the OOM killer), not us
            name = signal.Signals(sig).name
            result.update(verdict="runtime_error", error_type=name, error_message=f"killed by {name}")
        else:
            code = outcome["exit_code"]
            result.update(
                verdict="runtime_error",
                error_type="EarlyExit",
                error_message=f"exited with code {code} before the tests finished",
            )
        return result
    result["output"] = done["output"]
    failures = [tests[i] for i in sorted(tests) if tests[i][0] != "passed"]
    if passed == tests_total:
        result["verdict"] = "passed"
    elif failures:
        kind, etype, line, message = failures[0]
        result.update(verdict=kind, error_type=etype, error_line=_line(line), error_message=message)
    else:  # fail_fast stopped early without a recorded failure cannot happen; be explicit anyway
        result.update(
            verdict="runtime_error", error_type="IncompleteRun", error_message="tests did not all run"
        )
    return result


def syntax_error(exc: Exception, tests_total: int, start: float) -> dict:
    line = getattr(exc, "lineno", None)
    return {
        "verdict": "syntax_error",
        "tests_passed": 0,
        "tests_total": tests_total,
        "error_type": type(exc).__name__,
        "error_line": line if isinstance(line, int) else None,
        "error_message": str(exc),
        "output": "",
        "duration_s": time.monotonic() - start,
    }
