"""The admin page's numbers, read from the DB: agreement, throughput, flags, skip reasons. No gradio."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from annotation_ui.agreement import AgreementReport, agreement_report
from db.models import Annotator, Ranking, RankingItem, Task


@dataclass
class AnnotatorStats:
    name: str
    ranked: int
    skipped: int
    flagged: int
    median_seconds: float | None  # per answered item, from claim to answer
    items_per_hour: float | None  # answers / span between first and last answer
    mean_tau_b: float | None
    tau_comparisons: int


@dataclass
class FlaggedItem:
    item_id: int
    task: str
    annotator: str
    reason: str
    comment: str


@dataclass
class QualityReport:
    agreement: AgreementReport
    annotators: list[AnnotatorStats]
    flagged: list[FlaggedItem]
    skip_reasons: list[tuple[str, int]]  # most common first
    items_total: int
    items_complete: int  # items with at least required_annotations rankings


def _throughput(rows: list[Ranking]) -> float | None:
    times = sorted(r.created_at for r in rows)
    if len(times) < 2:
        return None
    hours = (times[-1] - times[0]).total_seconds() / 3600
    return len(times) / hours if hours > 0 else None


def quality_report(session: Session) -> QualityReport:
    names = dict(session.execute(select(Annotator.id, Annotator.name)).all())
    rankings = list(
        session.scalars(select(Ranking).options(selectinload(Ranking.entries)).order_by(Ranking.id))
    )
    by_item: dict[int, dict[str, dict[int, int]]] = defaultdict(dict)
    rows_of: dict[str, list[Ranking]] = defaultdict(list)
    for r in rankings:
        rows_of[names[r.annotator_id]].append(r)
        if not r.skipped and r.entries:
            by_item[r.item_id][names[r.annotator_id]] = {e.completion_id: e.rank for e in r.entries}
    agreement = agreement_report(by_item)
    tau_of = {a.annotator: a for a in agreement.per_annotator}
    stats = []
    for name in sorted(rows_of):
        rows = rows_of[name]
        answered = [r.time_spent_s for r in rows if not r.skipped]
        tau = tau_of.get(name)
        stats.append(
            AnnotatorStats(
                name=name,
                ranked=sum(not r.skipped for r in rows),
                skipped=sum(r.skipped for r in rows),
                flagged=sum(r.flagged for r in rows),
                median_seconds=statistics.median(answered) if answered else None,
                items_per_hour=_throughput(rows),
                mean_tau_b=tau.mean_tau_b if tau else None,
                tau_comparisons=tau.comparisons if tau else 0,
            )
        )
    task_of_item = dict(
        session.execute(select(RankingItem.id, Task.task_id).join(Task, Task.id == RankingItem.task_id)).all()
    )
    flagged = [
        FlaggedItem(
            r.item_id,
            task_of_item.get(r.item_id, "?"),
            names[r.annotator_id],
            r.flag_reason or "",
            r.comment or "",
        )
        for r in rankings
        if r.flagged
    ]
    skips = Counter(r.skip_reason or "" for r in rankings if r.skipped)
    required = dict(session.execute(select(RankingItem.id, RankingItem.required_annotations)).all())
    complete = sum(len(by_item.get(item, {})) >= need for item, need in required.items())
    return QualityReport(
        agreement=agreement,
        annotators=stats,
        flagged=flagged,
        skip_reasons=skips.most_common(),
        items_total=len(required),
        items_complete=complete,
    )
