"""The simulated panel ranks through the service layer like people, with its rubric, noise, ties and overlap."""

from __future__ import annotations

import random

from sqlalchemy import func, select

from annotation_ui.items import build_items
from annotation_ui.panel import PanelConfig, judge, ranks, run_panel, utility
from annotation_ui.quality import quality_report
from annotation_ui.sample_data import seed_sample_data
from annotation_ui.views import CompletionView
from db.models import Annotator, Ranking, RankingEntry


def _view(text: str, verdict: str = "passed", passed: int = 3, issues: int = 0) -> CompletionView:
    findings = {"readability": [{"code": "F841", "line": 3, "message": "x"}] * issues}
    return CompletionView(0, "A", text, verdict, passed, 3, static_findings=findings)


def test_the_rubric_puts_correctness_first_then_readability():
    cfg = PanelConfig()
    clean, sloppy = _view("    return x + 1\n"), _view("    unused = 0\n    return x + 1\n", issues=1)
    wrong = _view("    return x\n", verdict="failed", passed=1)
    assert utility(clean, cfg) > utility(sloppy, cfg) > utility(wrong, cfg)
    rng = random.Random(0)
    assert ranks([wrong, sloppy, clean], cfg, 0.0, rng) == [3, 2, 1]  # no noise: the rubric itself
    assert judge(clean, sloppy, cfg, 0.0, rng) == 1.0 and judge(sloppy, sloppy, cfg, 0.0, rng) == 0.5
    noisy = [judge(clean, sloppy, cfg, 1.2, random.Random(i)) for i in range(400)]
    assert 0.5 < sum(noisy) / len(noisy) < 0.95  # a noisy member errs sometimes, not mostly


def test_members_rank_every_open_item_through_the_service_with_overlap(db):
    with db.session() as s:
        seed_sample_data(s, tasks=6, per_policy=2)
        items = build_items(s, k=4, selection="execution_ties_first", required_annotations=3, seed=0)
    cfg = PanelConfig(annotators=5, seed=0)
    result = run_panel(db, cfg)
    assert result.items == items and result.rankings == 3 * items
    with db.session() as s:
        panel = s.scalars(select(Annotator).where(Annotator.name.like("panel-%"))).all()
        assert len(panel) == 5 and all(a.simulated and a.role == "annotator" for a in panel)
        per_item = s.execute(select(Ranking.item_id, func.count()).group_by(Ranking.item_id)).all()
        assert {count for _, count in per_item} == {3}
        assert s.scalar(select(func.count()).select_from(RankingEntry)) == 3 * items * 4
        # members take turns, as people side by side do: every member ranks a share, not just the first three
        per_member = dict(
            s.execute(select(Ranking.annotator_id, func.count()).group_by(Ranking.annotator_id)).all()
        )
        assert len(per_member) == 5 and max(per_member.values()) - min(per_member.values()) <= 1
        agreement = quality_report(s).agreement
    assert agreement.shared_items == items and agreement.mean_tau_b is not None
    assert run_panel(db, cfg).rankings == 0  # nothing left: nobody ranks an item twice


def test_a_person_with_the_panels_name_is_refused(db):
    import pytest

    from annotation_ui.users import add_user
    from codealign.errors import UserError

    with db.session() as s:
        add_user(s, "panel-01", "correct horse battery staple", "annotator", created_by="test")
    with pytest.raises(UserError, match="panel-01.*a person's"):
        run_panel(db, PanelConfig(annotators=1))


def test_the_report_shows_who_ranked_and_how_much_they_agree(db, tmp_path):
    """People and panel members counted apart, with the admin page's agreement, in the report's section."""
    import re

    from alignment.report import write_report
    from annotation_ui import assignment
    from annotation_ui.users import add_user

    with db.session() as s:
        seed_sample_data(s, tasks=6, per_policy=2)
        build_items(s, k=4, selection="execution_ties_first", required_annotations=3, seed=0)
        person = add_user(s, "alice", "correct horse battery staple", "annotator", created_by="test")
        view = assignment.claim_next(s, person, claim_ttl_minutes=30)
        assignment.submit_ranking(
            s, person, view.assignment_id, [str(r) for r in range(1, len(view.completions) + 1)]
        )
    result = run_panel(db, PanelConfig(annotators=3, seed=0))
    with db.session() as s:
        agreement = quality_report(s).agreement
    page = write_report(tmp_path / "r", db).read_text()
    section = page.split("<h2>Human feedback: rankings, agreement, readability</h2>")[1].split("<h2>")[0]
    cells = re.findall(r"<td>(.*?)</td>", section)
    assert cells[:6] == ["people", "1", "1", "simulated panel", "3", str(result.rankings)]
    assert (
        f"τ-b {agreement.mean_tau_b:.3f}" in section and f"(ordinal) {agreement.alpha_ordinal:.3f}" in section
    )


def test_the_report_says_when_nobody_ranked_yet(db, tmp_path):
    from alignment.report import write_report

    page = write_report(tmp_path / "r", db).read_text()
    assert "No rankings yet (codealign annotate, or codealign panel)." in page
