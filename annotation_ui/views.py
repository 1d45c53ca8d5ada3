"""Plain dataclasses the pages render, loaded from the DB. No gradio import, no HTML here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codealign.tasks.chat import program, task_messages
from db.models import Completion, Execution, StaticScore

LABELS = "ABCDEFGH"


@dataclass
class CompletionView:
    completion_id: int
    label: str  # "A", "B", ... by display position; never the policy name
    text: str
    verdict: str | None = None  # None: not executed yet
    tests_passed: int = 0
    tests_total: int = 0
    error_type: str | None = None
    error_line: int | None = None  # line in prompt + completion, as the sandbox reports it
    output: str = ""
    static_scores: dict[str, Any] = field(default_factory=dict)
    static_findings: dict[str, Any] = field(default_factory=dict)
    # Line number of the text's first line; None: the line after the prompt's. A chat task's card shows the
    # code of the answer (what ran, numbered as the sandbox numbered it), not its prose.
    first_line: int | None = None


def load_completion_views(session: Session, completion_ids: list[int]) -> list[CompletionView]:
    """Views in the order of ``completion_ids`` (labels A, B, ... follow that order)."""
    rows = session.execute(
        select(Completion, Execution, StaticScore)
        .outerjoin(Execution, Execution.completion_id == Completion.id)
        .outerjoin(StaticScore, StaticScore.completion_id == Completion.id)
        .where(Completion.id.in_(completion_ids))
    ).all()
    by_id = {c.id: (c, e, s) for c, e, s in rows}
    views = []
    for position, cid in enumerate(completion_ids):
        completion, execution, static = by_id[cid]
        view = CompletionView(completion_id=cid, label=LABELS[position], text=completion.text)
        if task_messages(completion.task.meta) is not None:
            view.text, view.first_line = program(completion.task.prompt, completion.text, chat=True), 1
        if execution is not None:
            view.verdict = execution.verdict
            view.tests_passed = execution.tests_passed
            view.tests_total = execution.tests_total
            view.error_type = execution.error_type
            view.error_line = execution.error_line
            view.output = execution.output
        if static is not None:
            view.static_scores = dict(static.scores or {})
            view.static_findings = dict(static.findings or {})
        views.append(view)
    return views
