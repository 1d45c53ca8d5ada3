"""MBPP (Austin et al., 2021) from the user's own copy of the benchmark; nothing is downloaded.

Two files are read, told apart by their fields:

* the original ``mbpp.jsonl`` (974 tasks): ``task_id`` (int), ``text``, ``code``, ``test_list``,
  ``test_setup_code``, ``challenge_test_list``; imported as source ``mbpp``;
* the sanitized subset ``sanitized-mbpp.json`` (427 tasks, a JSON array; JSONL is read too): ``task_id``,
  ``prompt`` (the hand-checked description), ``code``, ``test_imports``, ``test_list``; imported as source
  ``mbpp-sanitized``.

Splits are the published ones, by task id, for both files: 1–10 ``prompt`` (the few-shot examples), 11–510
``test``, 511–600 ``validation``, 601–974 ``train``.

The prompt is the standard one (InCoder's, as bigcode-evaluation-harness builds it): a docstring holding the
description and the first test as the example. codealign's sampler continues a function body and stops at
the first dedent (:mod:`alignment.generation`), as for HumanEval, so the prompt goes on with the reference
code up to the signature of the function under test (its imports and any helper defined before it, as
HumanEval's prompts carry helpers), and ``reference_solution`` is the rest of the code: ``prompt +
reference_solution`` is the docstring followed by the original code, unchanged. When the function under test
is not a top-level ``def`` of the code (or the code does not parse), the prompt is the docstring alone and the
reference is the whole code.

Each test is one of ``test_list`` after the row's ``test_setup_code`` (``test_imports``); the challenge tests
are kept in ``meta["challenge_tests"]``, not run (MBPP's own evaluation does not run them either).

Every row is checked before anything is returned; a bad one raises :class:`UserError` naming the file, the
line (or array item) and the field.
"""

from __future__ import annotations

import ast
import builtins
import json
import re
from pathlib import Path
from typing import Any

from codealign.errors import UserError
from codealign.tasks.spec import TaskSpec

SOURCE = "mbpp"
SANITIZED_SOURCE = "mbpp-sanitized"
SOURCES = (SOURCE, SANITIZED_SOURCE)
# (split, first id, last id): the published partition of the 974 task ids
SPLIT_RANGES = (("prompt", 1, 10), ("test", 11, 510), ("validation", 511, 600), ("train", 601, 974))
ORIGINAL_FIELDS = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
SANITIZED_FIELDS = ("task_id", "prompt", "code", "test_imports", "test_list")


def mbpp_split(number: int) -> str | None:
    """The published split of MBPP task ``number``; None outside 1–974."""
    return next((name for name, lo, hi in SPLIT_RANGES if lo <= number <= hi), None)


def standard_prompt(description: str, first_test: str) -> str:
    """The description and one test in a docstring, as bigcode-evaluation-harness writes InCoder's prompt."""
    return f'"""\n{description}\n{first_test}\n"""\n'


def load_mbpp(path: str | Path) -> list[TaskSpec]:
    """Every task of an MBPP file (original or sanitized), in file order; one-line errors, nothing partial."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"MBPP file not found: {path}")
    rows = list(_rows(path))
    if not rows:
        raise UserError(f"{path}: no tasks found")
    sanitized = isinstance(rows[0][1], dict) and "prompt" in rows[0][1] and "text" not in rows[0][1]
    fields = SANITIZED_FIELDS if sanitized else ORIGINAL_FIELDS
    specs, seen = [], {}
    for where, row in rows:
        spec = _row_to_spec(row, where, fields, sanitized)
        if spec.task_id in seen:
            raise UserError(f"{where}: duplicate task_id {row['task_id']!r} (first at {seen[spec.task_id]})")
        seen[spec.task_id] = where
        specs.append(spec)
    return specs


def _rows(path: Path):
    """``(where, row)`` per task: a JSON array (the sanitized file as published) or one object per line."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        yield from ((f"{path} item {i}", item) for i, item in enumerate(items))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None


def _row_to_spec(row: Any, where: str, fields: tuple[str, ...], sanitized: bool) -> TaskSpec:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
    kind = "sanitized MBPP" if sanitized else "MBPP"
    for name in fields:
        if name not in row:
            raise UserError(f"{where}: missing field '{name}' of the {kind} format ({', '.join(fields)})")
    number = row["task_id"]
    if isinstance(number, str) and number.strip().isdigit():
        number = int(number)
    if not isinstance(number, int) or isinstance(number, bool):
        raise UserError(f"{where}: field 'task_id' must be an integer, got {row['task_id']!r}")
    split = mbpp_split(number)
    if split is None:
        raise UserError(f"{where}: field 'task_id' is {number}, outside MBPP's 1–974 (its splits are by id)")
    description = _text(row, "prompt" if sanitized else "text", where)
    code = _text(row, "code", where)
    tests = _code_list(row, "test_list", where, required=True)
    if sanitized:
        setup = "\n".join(_code_list(row, "test_imports", where))
    else:
        setup = row["test_setup_code"]
        if not isinstance(setup, str):
            raise UserError(f"{where}: field 'test_setup_code' must be a string")
        setup = _lf(setup).strip()
    entry_point = _entry_point(code, tests[0], where)
    head, reference = _split_at_signature(code, entry_point)
    meta: dict[str, Any] = {"suite": SOURCE, "mbpp_id": number, "description": description}
    if sanitized:
        meta["subset"] = "sanitized"
    else:
        meta["challenge_tests"] = _code_list(row, "challenge_test_list", where)
    return TaskSpec(
        task_id=f"mbpp/{number}",
        prompt=standard_prompt(description, tests[0]) + head,
        entry_point=entry_point,
        tests=[f"{setup}\n{test}\n" if setup else f"{test}\n" for test in tests],
        reference_solution=reference,
        split=split,
        meta=meta,
    )


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")  # the published code has Windows line ends


def _text(row: dict, name: str, where: str) -> str:
    value = row[name]
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field '{name}' must be a non-empty string")
    return _lf(value)


def _code_list(row: dict, name: str, where: str, required: bool = False) -> list[str]:
    value = row[name]
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise UserError(f"{where}: field '{name}' must be a list of code strings")
    if required and not value:
        raise UserError(f"{where}: field '{name}' must have at least one test")
    return [_lf(item).strip() for item in value]


def _entry_point(code: str, first_test: str, where: str) -> str:
    """The function the first test calls: the first name it calls that the code defines, else the first
    name it calls that is not a builtin."""
    try:
        test_tree = ast.parse(first_test)
    except SyntaxError as exc:
        raise UserError(
            f"{where}: field 'test_list' holds a test that is not valid Python ({exc.msg})"
        ) from None
    called = [
        node.func.id
        for node in ast.walk(test_tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    defined = set(re.findall(r"^(?:async\s+)?(?:def|class)\s+([A-Za-z_]\w*)", code, flags=re.MULTILINE))
    for name in called:
        if name in defined:
            return name
    for name in called:
        if not hasattr(builtins, name):
            return name
    raise UserError(f"{where}: field 'test_list': the first test calls no function to test")


def _split_at_signature(code: str, entry_point: str) -> tuple[str, str]:
    """``(code up to the body of entry_point, the rest)``; ``("", code)`` when it is no top-level def."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "", code
    target = next(
        (
            node
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point
        ),
        None,
    )
    if target is None:
        return "", code
    lines = code.splitlines(keepends=True)
    first = target.body[0]
    if first.lineno > target.lineno:  # the usual case: the body starts on a line of its own
        cut = first.lineno - 1
        return "".join(lines[:cut]), "".join(lines[cut:])
    # a one-line function (`def f(x): return x`): the body goes on a line of its own, indented
    line = lines[first.lineno - 1]
    column = len(line.encode("utf-8")[: first.col_offset].decode("utf-8"))  # col_offset counts bytes
    head = "".join(lines[: first.lineno - 1]) + line[:column].rstrip() + "\n"
    return head, "    " + line[column:] + "".join(lines[first.lineno :])
