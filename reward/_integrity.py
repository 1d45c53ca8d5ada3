"""What keeps a wrong program from making its tests pass: used by :mod:`reward._harness` inside each run.

Standard library only. The fork server calls :func:`snapshot` once, before any program exists; each run's
child then checks against it. Four defences, each named in the verdict when it fires:

* **Trusted namespace.** Tests resolve builtins in the server's pristine copy; a module-level name that
  shadows a builtin the tests use is left out of their namespace (``def abs`` reaches the program's own
  code, never the tests). With the task's prompt, the tests take every name the prompt defines from a
  separate run of the prompt alone, and only the entry point (the prompt's last ``def``/``class``) from
  the program, so redefining a helper (HumanEval/32's ``poly``) changes nothing the tests see.
* **Pristine modules.** Every module the tests import or see by name must be the module that was loaded
  before the program ran, with the same attribute objects (``math.fabs = ...`` is caught; attributes added
  to a module are allowed: importing a submodule adds one).
* **Plain data.** A program function the tests call is wrapped: its return value (and every argument that
  was plain data before the call) must be plain data — ``None``/``bool``/numbers/``str``/``bytes`` and
  lists, tuples, dicts, sets of them, instances of types that existed before the program ran (``Counter``,
  ``Fraction``, ...), or classes of the program that define no behaviour of their own (a ``namedtuple``).
  An object whose ``__eq__`` is always true fails the test that got it.
* **No view of the stack.** Frames (``sys._getframe``, ``tb_frame``, ``gi_frame``...) are refused to
  programs; only the standard library functions that read a caller's module name (``namedtuple``,
  ``typing``, ``enum``) and the harness itself may take them, so neither the test code (its expected
  values) nor the harness (the nonce) can be read.

Non-guarantees: methods of standard-library classes patched in place (``Counter.__eq__ = ...``) are not
detected; a program class with its own dunder methods (e.g. a custom ``__eq__``, dataclasses included)
cannot be returned to tests; tasks whose entry point is a class have their methods' results unchecked.
"""

from __future__ import annotations

import builtins
import functools
import sys
import types

# Names a class of the program may define and still count as data: what namedtuple and plain
# ``class P(tuple)`` bodies hold. Anything else spelled __x__ (comparisons, arithmetic, __hash__,
# __getattribute__, ...) is behaviour the tests would run.
DATA_DUNDERS = frozenset(
    {
        "__module__",
        "__qualname__",
        "__doc__",
        "__slots__",
        "__dict__",
        "__weakref__",
        "__new__",
        "__init__",
        "__repr__",
        "__getnewargs__",
        "__match_args__",
        "__annotations__",
        "__orig_bases__",
        "__parameters__",
    }
)
HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time (by Python code)
SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
CONTAINERS = (list, tuple, set, frozenset, dict)
# sys: the harness itself rebinds sys.stdout/stderr/stdin; builtins: tests use the pristine copy anyway.
UNCHECKED_MODULES = frozenset({"sys", "builtins"})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
_MISSING = object()


def snapshot() -> dict:
    """Taken in the fork server: every loaded module with its attributes, every type that exists, and the
    code objects allowed to take frames."""
    modules = {name: (m, tuple(vars(m).items())) for name, m in list(sys.modules.items()) if m is not None}
    known_types = set(SCALARS)
    for _, items in modules.values():
        known_types.update(v for _, v in items if isinstance(v, type))
    known_types.update(v for v in vars(builtins).values() if isinstance(v, type))
    return {
        "modules": modules,
        "types": frozenset(known_types),
        "frame_codes": frozenset(_frame_codes()),
        # where the standard library and site-packages live (read-only in the sandbox): code from there is
        # the libraries' own (see the module docstring for the one way around it)
        "code_dirs": tuple(p.rstrip("/") + "/" for p in sys.path if p and p.startswith("/")),
    }


def _frame_codes() -> list:
    """Standard-library code that takes a frame only to read its caller's module name, and the import
    system's loader of .pyc files (marshal.loads)."""
    codes = []
    external = sys.modules.get("_frozen_importlib_external")
    if external is not None:
        codes.append(external._compile_bytecode.__code__)
    collections = sys.modules.get("collections")
    if collections is not None:
        codes.append(collections.namedtuple.__code__)
    typing = sys.modules.get("typing")
    if typing is not None and hasattr(typing, "_caller"):
        codes.append(typing._caller.__code__)
    enum = sys.modules.get("enum")
    if enum is not None:
        codes += [f.__code__ for f in vars(enum.EnumType).values() if _calls_getframe(f)]
    return codes


def _calls_getframe(value) -> bool:
    function = getattr(value, "__func__", value)
    code = getattr(function, "__code__", None)
    return code is not None and "_getframe" in code.co_names


def extend(pristine: dict, names) -> None:
    """Modules imported by the child for the tests before the program runs join the snapshot."""
    modules, added = pristine["modules"], set()
    for name in list(sys.modules):
        module = sys.modules[name]
        if module is not None and name not in modules:
            modules[name] = (module, tuple(vars(module).items()))
            added.update(v for v in vars(module).values() if isinstance(v, type))
    if added:
        pristine["types"] = pristine["types"] | added


def patched_module(pristine: dict, names, namespace: dict) -> str | None:
    """The first module the tests can reach (imported by name, or bound in their namespace) that is not
    the pristine one or has a replaced attribute: ``'math.fabs'``; None when all are intact."""
    modules = pristine["modules"]
    current = sys.modules
    for name in names:
        entry = modules.get(name)
        if entry is None or name in UNCHECKED_MODULES:
            continue
        module, items = entry
        if current.get(name) is not module:
            return name
        attributes = vars(module)
        for key, value in items:
            if attributes.get(key, _MISSING) is not value:
                return f"{name}.{key}"
    for key in names:
        value = namespace.get(key)
        if isinstance(value, types.ModuleType):  # an unknown module is one the program imported itself
            expected = modules.get(value.__name__)
            if expected is not None and expected[0] is not value:
                return key
    return None


def redefinitions(trusted: dict, program: dict, entry: str, names) -> list[str]:
    """Names the prompt defines and the tests use that the program rebound to something else."""
    return sorted(
        key
        for key, value in trusted.items()
        if key != entry and key in names and key in program and not _same(value, program[key])
    )


def _same(a, b) -> bool:
    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
        return a.__code__.co_code == b.__code__.co_code and a.__code__.co_names == b.__code__.co_names
    if type(a) is type(b) and type(a) in SCALARS:
        return a == b
    return a is b


def plain_problem(value, known_types, code_dirs=()) -> str | None:
    """Why ``value`` is not plain data (the offending type's name), or None."""
    stack = [value]
    seen = 0
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in SCALARS:
            continue
        seen += 1
        if seen > 1_000_000:
            return "a structure of over a million objects"
        if kind not in known_types and not _trusted_class(kind, known_types, code_dirs):
            return kind.__name__
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, CONTAINERS):
            stack.extend(item)
        elif hasattr(kind, "__next__") or callable(item):
            return kind.__name__  # iterators and callables would run program code after the check
        elif hasattr(kind, "__iter__"):  # a standard container (deque, array, range): its items count
            stack.extend(item)
    return None


def _trusted_class(kind: type, known_types, code_dirs) -> bool:
    """A type the program cannot have given behaviour of its own: a C type (no ctypes: a program cannot make
    one), or a class whose dunder methods all come from library files (a module the program imported) or
    that has none besides data ones (a namedtuple)."""
    if not kind.__flags__ & HEAP_TYPE:
        return True
    if type(kind) is not type and type(kind) not in known_types:
        return False
    for klass in kind.__mro__:
        if klass in known_types or not klass.__flags__ & HEAP_TYPE:
            continue
        for name, value in vars(klass).items():
            if name[:2] == "__" == name[-2:] and name not in DATA_DUNDERS:
                code = getattr(getattr(value, "__func__", value), "__code__", None)
                if code is None or not code.co_filename.startswith(code_dirs):
                    return False
    return True


def checked(function, name: str, known_types, code_dirs):
    """``function`` as the tests call it: its results and the plain arguments it mutated stay plain data."""
    problem, scalars = plain_problem, SCALARS

    def call(*args, **kwargs):
        given = [a for a in (*args, *kwargs.values()) if type(a) not in scalars] if args or kwargs else ()
        before = [a for a in given if problem(a, known_types, code_dirs) is None]
        result = function(*args, **kwargs)
        why = None if type(result) in scalars else problem(result, known_types, code_dirs)
        if why is not None:
            raise AssertionError(f"{name} returned a {why}: tests compare plain data only")
        for arg in before:
            why = problem(arg, known_types, code_dirs)
            if why is not None:
                raise AssertionError(f"{name} put a {why} into its argument: tests compare plain data only")
        return result

    return functools.update_wrapper(call, function)  # name, doc, annotations; inspect follows __wrapped__
