"""The data of the report's human-feedback section (rendered by ``alignment.report.page``): who ranked, how
much they agree, what the reward model learned from them, and whether the aligned policies write more
readable code.

Read from the DB alone, as the rest of the report: annotators and their rankings (people and simulated panel
members apart: ``Annotator.simulated``), agreement as the admin page computes it (Kendall τ-b on shared items,
Krippendorff's α, :func:`annotation_ui.quality.quality_report`), each reward-model run's held-out accuracy on
pairs whose programs got the same / a different execution verdict, and per policy of the broadest evaluation
setup the readability-issue rate over all and over passing samples (``EvalResult.metrics``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select


def collect_feedback(session) -> dict[str, Any]:
    """Counts and agreement of the rankings in the DB (``rankings`` 0: no human-feedback data yet)."""
    from annotation_ui.quality import quality_report
    from db.models import Annotator, Ranking

    counts = dict(
        session.execute(
            select(Annotator.simulated, func.count(Ranking.id))
            .join(Ranking, Ranking.annotator_id == Annotator.id)
            .where(Ranking.skipped.is_(False))
            .group_by(Annotator.simulated)
        ).all()
    )
    ranked_by = dict(
        session.execute(
            select(Annotator.simulated, func.count(func.distinct(Ranking.annotator_id)))
            .join(Ranking, Ranking.annotator_id == Annotator.id)
            .group_by(Annotator.simulated)
        ).all()
    )
    report = quality_report(session) if counts else None
    return {
        "rankings": sum(counts.values()),
        "people": (ranked_by.get(False, 0), counts.get(False, 0)),
        "simulated": (ranked_by.get(True, 0), counts.get(True, 0)),
        "items_total": report.items_total if report else 0,
        "items_complete": report.items_complete if report else 0,
        "shared_items": report.agreement.shared_items if report else 0,
        "tau_b": report.agreement.mean_tau_b if report else None,
        "alpha": report.agreement.alpha_ordinal if report else None,
    }
