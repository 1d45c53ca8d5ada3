"""Renderings of a ``basic`` reference body in the styles real code models write, all correct.

Every reference of the plain suite does one step per line (``clean``). A policy fine-tuned only on that writes
only that, so annotators would have nothing to prefer among passing samples. The ``mixed`` suite renders each
*train* reference in one of four styles, with the proportions of :data:`MIX`:

* ``clean`` — one step per line, ``return`` the variable (as the plain suite);
* ``one_line`` — the chain composed into one ``return`` expression (chains of one-line steps only);
* ``verbose`` — a needless working copy and a needless temporary before the return (``value = x`` ...
  ``result = value; return result``: ruff's RET504);
* ``sloppy`` — one or two of: an unused assignment (F841), a self-assignment ``x = x`` (PLW0127),
  redundant parentheses around a step's value, a step wrapped in ``if True:``.

The first two have no readability issue (:mod:`reward.readability` finds none), the last two one or more. A
rendering is kept only when it gives the clean body's outputs on the task's test inputs (the suite checks it);
otherwise the task keeps its clean reference. Pure: no torch, no DB.
"""

from __future__ import annotations

import ast
import random
import re

STYLES = ("clean", "one_line", "verbose", "sloppy")
# The share of each style among the train references (as a study of mixed-style SFT data used; the SFT
# policy trained on it then wrote ~41 % clean, 32 % sloppy, 13 % one-line, 9 % verbose code).
MIX = {"clean": 0.32, "sloppy": 0.30, "verbose": 0.27, "one_line": 0.11}


def pick_style(rng: random.Random) -> str:
    return rng.choices(list(MIX), weights=list(MIX.values()))[0]


def render(body: list[str], var: str, style: str, rng: random.Random) -> list[str] | None:
    """``body`` (unindented lines, the last ``return <var>``, steps ``<var> = ...``) in ``style``; None
    when the style does not apply to this body (the caller keeps the clean one)."""
    if style == "clean":
        return list(body)
    if style == "one_line":
        return _one_line(body, var)
    if style == "verbose":
        return _verbose(body, var)
    if style == "sloppy":
        return _sloppy(body, var, rng)
    raise ValueError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")


def _returned(body: list[str]) -> str | None:
    match = re.fullmatch(r"return (\w+)", body[-1]) if body else None
    return match.group(1) if match else None


def _one_line(body: list[str], var: str) -> list[str] | None:
    """``x = x + 3; x = x * 2; return x`` -> ``return (x + 3) * 2`` (parentheses only where needed)."""
    if _returned(body) != var:
        return None
    expr: ast.expr = ast.Name(var, ast.Load())
    for line in body[:-1]:
        match = re.fullmatch(rf"{re.escape(var)} = (.+)", line)
        if match is None:  # a block (e.g. `if ...:`), not one assignment
            return None
        step = ast.parse(match.group(1), mode="eval").body
        expr = _Substitute(var, expr).visit(step)
    return [f"return {ast.unparse(expr)}"]


class _Substitute(ast.NodeTransformer):
    def __init__(self, var: str, value: ast.expr):
        self.var, self.value = var, value

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.value if node.id == self.var else node


def _rename(line: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", new, line)


def _verbose(body: list[str], var: str) -> list[str] | None:
    returned = _returned(body)
    if returned is None:
        return None
    if returned != var:  # loops: the accumulator, not the argument, is returned
        return [*body[:-1], f"result = {returned}", "return result"]
    steps = [_rename(line, var, "value") for line in body[:-1]]
    return ["value = " + var, *steps, "result = value", "return result"]


def _sloppy(body: list[str], var: str, rng: random.Random) -> list[str] | None:
    returned = _returned(body)
    if returned is None:
        return None
    lines = list(body)
    tricks = rng.sample(["unused", "self_assign", "parens", "if_true"], rng.choice([1, 2]))
    for trick in tricks:
        steps = [i for i, line in enumerate(lines[:-1]) if re.fullmatch(rf"{re.escape(returned)} = .+", line)]
        if trick == "unused":
            lines.insert(0, rng.choice(["unused = 0", f"original = {var}", "temp = None"]))
        elif trick == "self_assign" and steps:
            at = rng.choice(steps)
            lines.insert(at + 1, f"{returned} = {returned}")
        elif trick == "parens" and steps:
            at = rng.choice(steps)
            name, value = lines[at].split(" = ", 1)
            lines[at] = f"{name} = ({value})"
        elif trick == "if_true" and steps:
            at = rng.choice(steps)
            lines[at : at + 1] = ["if True:", "    " + lines[at]]
    return lines if lines != body else None
