"""Custom tasks from a JSONL file or a local Hugging Face ``datasets`` directory/file.

Schema, one JSON object per line (or one dataset row):

==================== ======== ===================================================================
field                required meaning
==================== ======== ===================================================================
``task_id``          yes      unique within the source, e.g. ``"mysuite/0"``
``prompt``           one of   signature + docstring; the program is ``prompt + completion``
``messages``         one of   a chat task: ``[{"role", "content"}, ...]`` ending with a user turn (TRL's
                              conversational format; ``prompt`` given as such a list means the same). The
                              program is the code of the answer (``codealign.tasks.chat``)
``entry_point``      yes      name of the function under test
``tests``            one of   list of self-contained snippets (``"assert f(1) == 2"``) — partial credit
``test``             one of   HumanEval-style ``def check(candidate): ...``; run as ``check(entry_point)``
``reference_solution`` no     body continuing the prompt (``canonical_solution`` is accepted too); for a
                              chat task, the answer (fenced or bare code)
``split``            no       ``train`` | ``test`` | ``pool`` (default ``test``)
``meta``             no       any JSON object, stored as is (``meta.messages`` is reserved)
==================== ======== ===================================================================

Every row is validated before anything is written: a bad row raises :class:`UserError` naming the file, the
line (or row) number and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from codealign.errors import UserError
from codealign.tasks.chat import MESSAGES_KEY, check_messages, display_prompt
from codealign.tasks.spec import SPLITS, TaskSpec

_KNOWN = {
    "task_id",
    "prompt",
    "messages",
    "entry_point",
    "tests",
    "test",
    "reference_solution",
    "canonical_solution",
    "split",
    "meta",
}


def row_to_spec(row: Any, where: str) -> TaskSpec:
    """One raw row -> TaskSpec; ``where`` is e.g. ``"tasks.jsonl line 7"`` for error messages."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")

    def text(field: str, required: bool = True) -> str | None:
        value = row.get(field)
        if value is None:
            if required:
                raise UserError(f"{where}: missing required field '{field}'")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise UserError(f"{where}: field '{field}' must be a non-empty string")
        return value

    messages, listed = None, isinstance(row.get("prompt"), list)
    if (
        listed or row.get("messages") is not None
    ):  # a chat task; a string prompt next to it is its display text
        if listed and row.get("messages") is not None:
            raise UserError(f"{where}: give the conversation once, as 'messages' or as a list 'prompt'")
        messages = check_messages(row["prompt"] if listed else row["messages"], where)
    task_id, entry_point = text("task_id"), text("entry_point")
    prompt = (
        text("prompt") if messages is None or isinstance(row.get("prompt"), str) else display_prompt(messages)
    )
    assert task_id is not None and prompt is not None and entry_point is not None
    if not entry_point.isidentifier():
        raise UserError(f"{where}: field 'entry_point' must be a Python identifier, got {entry_point!r}")
    if row.get("tests") is not None:
        tests = row["tests"]
        if isinstance(tests, str):
            tests = [tests]
        if (
            not isinstance(tests, list)
            or not tests
            or not all(isinstance(t, str) and t.strip() for t in tests)
        ):
            raise UserError(f"{where}: field 'tests' must be a non-empty list of code strings")
    elif row.get("test") is not None:
        test = text("test")
        tests = [f"{test}\ncheck({entry_point})\n"]
    else:
        raise UserError(f"{where}: missing required field 'tests' (or HumanEval-style 'test')")
    reference = text("reference_solution", required=False)
    if reference is None:
        reference = text("canonical_solution", required=False)
    split = row.get("split") or "test"
    if split not in SPLITS:
        raise UserError(f"{where}: field 'split' must be one of {list(SPLITS)}, got {split!r}")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise UserError(f"{where}: field 'meta' must be a JSON object")
    if MESSAGES_KEY in meta:
        raise UserError(
            f"{where}: meta.{MESSAGES_KEY} is reserved; give a conversation as the 'messages' field"
        )
    unknown = sorted(set(row) - _KNOWN)
    if unknown:
        meta = {**meta, "extra": {k: row[k] for k in unknown}}  # kept, never silently dropped
    return TaskSpec(task_id, prompt, entry_point, list(tests), reference, split, meta, messages)


def _check_unique(specs: list[TaskSpec], wheres: list[str]) -> None:
    seen: dict[str, str] = {}
    for spec, where in zip(specs, wheres):
        if spec.task_id in seen:
            raise UserError(f"{where}: duplicate task_id {spec.task_id!r} (first at {seen[spec.task_id]})")
        seen[spec.task_id] = where


def load_jsonl(path: str | Path) -> list[TaskSpec]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tasks file not found: {path}")
    specs, wheres = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            specs.append(row_to_spec(row, where))
            wheres.append(where)
    if not specs:
        raise UserError(f"{path}: no tasks found")
    _check_unique(specs, wheres)
    return specs


def load_datasets_path(path: str | Path, split: str | None = None) -> list[TaskSpec]:
    """A ``save_to_disk`` directory, or a .json/.jsonl/.parquet/.csv file, read with ``datasets`` (offline)."""
    import datasets

    path = Path(path)
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as exc:
            raise UserError(f"{path}: not a dataset saved with save_to_disk ({exc})") from None
    elif path.is_file():
        kind = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
        if kind is None:
            raise UserError(
                f"{path}: unsupported dataset file type '{path.suffix}' (json, jsonl, parquet, csv)"
            )
        loaded = datasets.load_dataset(kind, data_files=str(path), split="train")
    else:
        raise UserError(f"dataset path not found: {path}")
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            raise UserError(f"{path}: has splits {list(loaded)}; choose one with --dataset-split")
        if split not in loaded:
            raise UserError(f"{path}: no split {split!r} (has {list(loaded)})")
        loaded = loaded[split]
    specs = [row_to_spec(row, f"{path} row {i}") for i, row in enumerate(loaded)]
    _check_unique(specs, [f"{path} row {i}" for i in range(len(specs))])
    return specs
