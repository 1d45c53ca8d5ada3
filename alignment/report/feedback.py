"""The report's human-feedback section: who ranked, how much they agree, what the reward model learned from
them, and whether the aligned policies write more readable code.

Read from the DB alone, as the rest of the report: annotators and their rankings (people and simulated panel
members apart: ``Annotator.simulated``), agreement as the admin page computes it (Kendall τ-b on shared items,
Krippendorff's α, :func:`annotation_ui.quality.quality_report`), each reward-model run's held-out accuracy on
pairs whose programs got the same / a different execution verdict, and per policy of the broadest evaluation
setup the readability-issue rate over all and over passing samples (``EvalResult.metrics``).
"""

from __future__ import annotations

import html
from typing import Any

from sqlalchemy import func, select

from alignment.report.data import ReportData


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


def feedback_section(data: ReportData, feedback: dict[str, Any], table) -> str:
    """HTML of the section; ``table`` is the page's escaping table builder."""
    title = "<h2>Human feedback: rankings, agreement, readability</h2>"
    if not feedback["rankings"]:
        return title + "<p class=empty>No rankings yet (codealign annotate, or codealign panel).</p>"

    def num(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    def pct(value):
        return "—" if value is None else f"{100 * value:.1f}"

    people, simulated = feedback["people"], feedback["simulated"]
    who = table(
        ["who", "annotators", "rankings"],
        [["people", people[0], people[1]], ["simulated panel", simulated[0], simulated[1]]],
    )
    agree = (
        f"<p>Items: {feedback['items_complete']:,} of {feedback['items_total']:,} fully ranked; "
        f"{feedback['shared_items']:,} ranked by two or more annotators. Agreement on those: mean Kendall "
        f"τ-b {html.escape(num(feedback['tau_b']))}, Krippendorff's α (ordinal) "
        f"{html.escape(num(feedback['alpha']))}.</p>"
    )
    rm_rows = [
        [r["run"], r["policy"] or "—", pct(r.get("same_verdict")), pct(r.get("different_verdict"))]
        for r in data.reward_model
    ]
    reward = (
        table(
            ["reward-model run", "policy", "held-out acc. same verdict %", "different verdict %"],
            rm_rows,
            left=2,
        )
        + "<p class=legend>Same verdict: both programs pass or both fail — the judgment only people add; "
        "across verdicts execution already decides.</p>"
        if rm_rows
        else ""
    )
    readable = ""
    if data.comparisons:
        rows = [
            [
                r.policy,
                pct(r.metrics.get("readability_issue_rate")),
                pct(r.metrics.get("readability_issue_rate_passing")),
                num(r.metrics.get("mean_lines"), 1),
            ]
            for r in data.comparisons[0].rows
        ]
        readable = table(
            [
                "policy",
                "samples with a readability issue %",
                "passing samples with one %",
                "lines per sample",
            ],
            rows,
        ) + (
            "<p class=legend>Readability issues: reward/readability.py (ruff rules, vulture, small AST checks); "
            f"setup: {html.escape(data.comparisons[0].setup.label())}.</p>"
        )
    return title + who + agree + reward + readable
