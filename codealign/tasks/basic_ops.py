"""The vocabulary of the ``basic`` suite: operations, each a docstring phrase plus the code that does it.

An :class:`Op` is one step of a generated function. ``phrase`` and ``code`` are ``str.format`` templates over
the step's constant ``c`` (and the variable name ``v``); ``constants`` lists the values ``c`` may take (empty:
the op has no constant). Code templates are single statements or a small indented block; the suite renders
them one step after another, so a reference solution reads like its docstring, clause by clause.

Pure data and tiny helpers; no torch, no DB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Op:
    name: str
    phrase: str
    code: str
    constants: tuple[Any, ...] = ()

    def render_phrase(self, c: Any) -> str:
        return self.phrase.format(c=c, r=repr(c))

    def render_code(self, v: str, c: Any) -> str:
        return self.code.format(v=v, c=c, r=repr(c))


# ------------------------------------------------------------------------------------ chain families
# A chain family transforms one variable step by step: ``v = <op>(v)`` per step, then ``return v``.

ARITHMETIC_OPS: tuple[Op, ...] = (
    Op("add", "add {c}", "{v} = {v} + {c}", tuple(range(1, 10))),
    Op("sub", "subtract {c}", "{v} = {v} - {c}", tuple(range(1, 10))),
    Op("mul", "multiply by {c}", "{v} = {v} * {c}", (2, 3, 4, 5)),
    Op("floordiv", "divide by {c} rounding down", "{v} = {v} // {c}", (2, 3, 4)),
    Op("mod", "take the remainder modulo {c}", "{v} = {v} % {c}", (3, 4, 5, 6, 7)),
    Op("square", "square it", "{v} = {v} * {v}"),
    Op("negate", "negate it", "{v} = -{v}"),
    Op("abs", "take the absolute value", "{v} = abs({v})"),
    Op("atleast", "raise it to at least {c}", "{v} = max({v}, {c})", (0, 1, 2, 5, 10)),
    Op("halve_even", "halve it if it is even", "if {v} % 2 == 0:\n    {v} = {v} // 2"),
)

STRING_OPS: tuple[Op, ...] = (
    Op("upper", "convert it to upper case", "{v} = {v}.upper()"),
    Op("swapcase", "swap the case of every letter", "{v} = {v}.swapcase()"),
    Op("reverse", "reverse it", "{v} = {v}[::-1]"),
    Op("append", "append {r}", "{v} = {v} + {r}", ("!", "ab", "xy", "?", "-z", "42")),
    Op("prepend", "prepend {r}", "{v} = {r} + {v}", (">", "ab", "Q", "pre", "_")),
    Op("first", "keep the first {c} characters", "{v} = {v}[:{c}]", (2, 3, 4, 5)),
    Op("drop", "drop the first {c} characters", "{v} = {v}[{c}:]", (1, 2, 3)),
    Op("repeat", "repeat it {c} times", "{v} = {v} * {c}", (2, 3)),
    Op("remove", "remove every {r}", "{v} = {v}.replace({r}, '')", ("a", "e", "o", "l", "n", "A")),
    Op("sort_chars", "sort its characters", "{v} = ''.join(sorted({v}))"),
)

LIST_OPS: tuple[Op, ...] = (
    Op("sort", "sort it in ascending order", "{v} = sorted({v})"),
    Op("reverse", "reverse the order", "{v} = {v}[::-1]"),
    Op("keep_even", "keep only the even numbers", "{v} = [n for n in {v} if n % 2 == 0]"),
    Op(
        "keep_gt", "keep only the numbers greater than {c}", "{v} = [n for n in {v} if n > {c}]", (0, 2, 3, 5)
    ),
    Op("add_each", "add {c} to every element", "{v} = [n + {c} for n in {v}]", (1, 2, 3, 10)),
    Op("mul_each", "multiply every element by {c}", "{v} = [n * {c} for n in {v}]", (2, 3, -1)),
    Op("first", "keep the first {c} elements", "{v} = {v}[:{c}]", (1, 2, 3)),
    Op("unique", "remove duplicates, keeping first occurrences", "{v} = list(dict.fromkeys({v}))"),
)

DICT_OPS: tuple[Op, ...] = (
    Op(
        "keep_gt",
        "keep only the entries whose value is greater than {c}",
        "{v} = {{k: n for k, n in {v}.items() if n > {c}}}",
        (0, 1, 3, 5),
    ),
    Op("add_each", "add {c} to every value", "{v} = {{k: n + {c} for k, n in {v}.items()}}", (1, 2, 5)),
    Op("mul_each", "multiply every value by {c}", "{v} = {{k: n * {c} for k, n in {v}.items()}}", (2, 3, 10)),
    Op("upper_keys", "convert every key to upper case", "{v} = {{k.upper(): n for k, n in {v}.items()}}"),
    Op(
        "drop_key",
        "remove the key {r} if present",
        "{v} = {{k: n for k, n in {v}.items() if k != {r}}}",
        ("a", "b", "x"),
    ),
)


@dataclass(frozen=True)
class ChainFamily:
    """A family whose functions apply a sequence of ops to one argument."""

    name: str  # also the entry-point prefix
    var: str
    type_hint: str
    noun: str  # how the docstring names the argument
    ops: tuple[Op, ...]


CHAIN_FAMILIES: dict[str, ChainFamily] = {
    "arithmetic": ChainFamily("num", "x", "int", "an integer x", ARITHMETIC_OPS),
    "strings": ChainFamily("text", "s", "str", "a string s", STRING_OPS),
    "lists": ChainFamily("nums", "xs", "list[int]", "a list of integers xs", LIST_OPS),
    "dicts": ChainFamily("table", "d", "dict[str, int]", "a dict d mapping strings to integers", DICT_OPS),
}

# ------------------------------------------------------------------------------- branch and loop parts
# Conditionals: ``if <cond>: <op A> else: <op B>``; loops: an aggregate over ``range(1, n + 1)``.

CONDITIONS: tuple[Op, ...] = (
    Op("gt", "is greater than {c}", "{v} > {c}", (0, 3, 5, 10)),
    Op("even", "is even", "{v} % 2 == 0"),
    Op("negative", "is negative", "{v} < 0"),
    Op("divisible", "is divisible by {c}", "{v} % {c} == 0", (3, 4, 5)),
)

BRANCH_OPS: tuple[Op, ...] = tuple(
    op for op in ARITHMETIC_OPS if op.name in {"add", "sub", "mul", "square", "negate", "floordiv"}
)

LOOP_TERMS: tuple[Op, ...] = (
    Op("i", "i", "i"),
    Op("square", "i squared", "i * i"),
    Op("times", "{c} times i", "{c} * i", (2, 3, 5)),
    Op("mod", "i modulo {c}", "i % {c}", (2, 3, 4)),
    Op("plus", "i plus {c}", "i + {c}", (1, 2, 7)),
)

LOOP_FILTERS: tuple[Op, ...] = (
    Op("all", "", "True"),
    Op("even", "i is even", "i % 2 == 0"),
    Op("odd", "i is odd", "i % 2 == 1"),
    Op("divisible", "i is divisible by {c}", "i % {c} == 0", (3, 4)),
    Op("gt", "i is greater than {c}", "i > {c}", (2, 3, 5)),
)

LOOP_AGGREGATES: tuple[str, ...] = ("sum", "count", "max")

# Input pools for the generated tests (chosen so that most ops change most inputs).
INT_INPUTS = tuple(range(-12, 25))
STRING_INPUTS = (
    "hello",
    "World",
    "banana",
    "Python",
    "level",
    "data42",
    "Ab cD",
    "ocean",
    "Lemon",
    "aeiou",
    "stack",
    "noon",
    "Zebra",
    "lol",
    "alpha",
    "Monday",
    "nine",
    "apple pie",
)
DICT_KEYS = ("a", "b", "x", "key", "n", "apple", "zed")
