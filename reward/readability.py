"""Readability issues in generated code: what a maintainer would ask to change although the tests pass.

``readability_issues(programs, first_lines)`` returns, per program, the issues located in the completion
(lines at or after ``first_lines[i]``, 1-based; the prompt is not the policy's writing). Detectors:

========== ============================================================ ===========================
code       what                                                         from
========== ============================================================ ===========================
F841       a local variable assigned and never used (dead code)        ruff (pyflakes)
PLW0127    a self-assignment ``x = x`` (a no-op)                        ruff (pylint)
PLW0128    a redeclared name in one assignment                          ruff (pylint)
RET504     a needless temporary: ``result = ...; return result``        ruff (flake8-return), but not
           (a reassigned argument returned, ``x = x * 2; return x``,
           is the one-step-per-line style, not a temporary)
RET505     ``else`` after ``return``                                    ruff (flake8-return)
SIM*       a simpler spelling exists (not SIM108: a ternary is taste)   ruff (flake8-simplify)
PLR1711    a useless ``return`` at the end                              ruff (pylint)
CA001      ``if True:`` / ``while True`` without break / constant tests small AST check (no rule exists)
CA002      redundant parentheses around an assigned value ``x = (x+3)`` small AST check on tokens
CA003      a needless working copy of an argument ``value = x``         small AST check
CA004      unreachable code after ``return``                           vulture
CA005      ``pass`` in a block that has other statements                small AST check
========== ============================================================ ===========================

A program that does not parse has one issue, ``E999`` (its syntax error). Ruff runs once per batch (JSON over
a temporary directory, as :mod:`reward.static` does), the AST checks and vulture in process. Pure: no torch.
Non-guarantee: these are style signals, not a proof of readability (naming, structure and comments are not
judged); the annotators' rankings are what teach the rest.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import tempfile
import tokenize
from collections.abc import Sequence
from dataclasses import asdict, dataclass

READABILITY_RULES = "F841,PLW0127,PLW0128,RET504,RET505,SIM,PLR1711"
# SIM108 (if/else assignment -> conditional expression) is a matter of taste, not a defect: not counted.
IGNORED = {"SIM108"}
LEGEND = {
    "F841": "dead code: a variable assigned and never used",
    "PLW0127": "a no-op: a variable assigned to itself",
    "PLW0128": "a name assigned twice in one statement",
    "RET504": "a needless temporary right before return",
    "RET505": "else after return",
    "SIM": "a simpler spelling exists",
    "PLR1711": "a useless return",
    "CA001": "a constant condition (if True:)",
    "CA002": "redundant parentheses around a value",
    "CA003": "a needless working copy of an argument",
    "CA004": "unreachable code",
    "CA005": "a needless pass",
    "E999": "does not parse",
}


@dataclass(frozen=True)
class Issue:
    code: str
    line: int  # in the program (prompt + completion), 1-based
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def legend(code: str) -> str:
    return LEGEND.get(code) or LEGEND.get(code.rstrip("0123456789")) or code


def readability_issues(
    programs: Sequence[str], first_lines: Sequence[int] | None = None
) -> list[list[Issue]]:
    programs = list(programs)
    starts = list(first_lines) if first_lines is not None else [1] * len(programs)
    if not programs:
        return []
    ruff = _ruff(programs)
    out = []
    for program, start, found in zip(programs, starts, ruff):
        try:
            tree = ast.parse(program)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            out.append([Issue("E999", getattr(exc, "lineno", None) or start, f"{type(exc).__name__}: {exc}")])
            continue
        arguments = {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in n.args.args}
        found = [i for i in found if i.code not in IGNORED and not _returns_an_argument(i, arguments)]
        issues = found + _ast_issues(program, tree) + _unreachable(program)
        out.append(sorted({i for i in issues if i.line >= start}, key=lambda i: (i.line, i.code)))
    return out


def issue_rate(issues: Sequence[Sequence[Issue]], mask: Sequence[bool] | None = None) -> float | None:
    """Share of programs with at least one issue (among those where ``mask`` is true); None when none."""
    chosen = [bool(found) for found, keep in zip(issues, mask or [True] * len(issues)) if keep]
    return sum(chosen) / len(chosen) if chosen else None


# -------------------------------------------------------------------------------------------- ruff
def _ruff(programs: list[str]) -> list[list[Issue]]:
    from reward.static import _finish_ruff, _scratch_dir, _start_ruff

    with tempfile.TemporaryDirectory(prefix="codealign-read-", dir=_scratch_dir()) as tmp:
        found = _finish_ruff(_start_ruff(programs, tmp, rules=READABILITY_RULES))
    return [[Issue(f["code"], f["line"], f["message"]) for f in per] for per in found]


def _returns_an_argument(issue: Issue, arguments: set[str]) -> bool:
    if issue.code != "RET504":
        return False
    match = re.search(r"assignment to `(\w+)`", issue.message)
    return bool(match) and match.group(1) in arguments


# --------------------------------------------------------------------------------------------- AST
def _ast_issues(program: str, tree: ast.AST) -> list[Issue]:
    issues = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            issues += _needless_copies(node)
        endless = isinstance(node, ast.While) and any(isinstance(n, ast.Break) for n in ast.walk(node))
        if isinstance(node, (ast.If, ast.While)) and isinstance(node.test, ast.Constant) and not endless:
            issues.append(Issue("CA001", node.lineno, f"constant condition: {ast.unparse(node.test)}"))
        body = getattr(node, "body", None)
        if isinstance(body, list) and len(body) > 1:
            issues += [
                Issue("CA005", s.lineno, "pass next to other statements")
                for s in body
                if isinstance(s, ast.Pass)
            ]
    issues += _redundant_parens(program, tree)
    return issues


def _needless_copies(fn: ast.FunctionDef) -> list[Issue]:
    """``value = x`` where ``x`` is an argument never read again: the copy only renames it."""
    args = {a.arg for a in fn.args.args}
    issues = []
    for i, stmt in enumerate(fn.body):
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Name)
            and stmt.value.id in args
            and stmt.targets[0].id != stmt.value.id
        ):
            later = [n for s in fn.body[i + 1 :] for n in ast.walk(s)]
            if not any(isinstance(n, ast.Name) and n.id == stmt.value.id for n in later):
                issues.append(
                    Issue("CA003", stmt.lineno, f"{stmt.targets[0].id} only renames {stmt.value.id}")
                )
    return issues


def _redundant_parens(program: str, tree: ast.AST) -> list[Issue]:
    """``x = (expr)``: a parenthesis right after ``=`` that closes at the end of the value, around a value that
    needs none (not a tuple, a generator or a multi-line expression)."""
    lines = program.splitlines()
    issues = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AugAssign, ast.Return)) or node.value is None:
            continue
        value = node.value
        if isinstance(value, (ast.Tuple, ast.GeneratorExp)) or value.lineno != value.end_lineno:
            continue
        line = lines[value.lineno - 1] if value.lineno - 1 < len(lines) else ""
        before = line[: value.col_offset].rstrip()
        after = line[value.end_col_offset :].lstrip()
        if before.endswith("(") and after.startswith(")") and _only_parens(line, value):
            issues.append(Issue("CA002", value.lineno, "redundant parentheses around the value"))
    return issues


def _only_parens(line: str, value: ast.expr) -> bool:
    """The parenthesis before the value belongs to the statement (``= (``, ``return (``), not to a call."""
    head = line[: value.col_offset].rstrip()[:-1].rstrip()
    if not head.endswith(("=", "return")):
        return False
    try:  # the rest of the line after the closing parenthesis must be a comment or nothing
        rest = line[value.end_col_offset :].lstrip()[1:]
        tokens = list(tokenize.generate_tokens(io.StringIO(rest).readline))
    except (tokenize.TokenError, IndentationError):
        return False
    return all(
        t.type in (tokenize.COMMENT, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER) for t in tokens
    )


def _unreachable(program: str) -> list[Issue]:
    import vulture

    scanner = vulture.Vulture(verbose=False)
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # it prints what it skips
        scanner.scan(program)
    return [
        Issue("CA004", item.first_lineno, item.message)
        for item in scanner.get_unused_code(min_confidence=100)
        if item.typ == "unreachable_code" and item.message.startswith("unreachable code")
    ]
