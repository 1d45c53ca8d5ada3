"""Write TaskSpecs into the DB: one transaction, idempotent by (source, task_id) and content hash."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alignment.tasks.spec import TaskSpec
from db.models import Task


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
            "meta": dict(spec.meta),
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
