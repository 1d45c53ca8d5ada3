"""Item building and assignment semantics: claims, expiry, skips, undo/edit, server-side validation."""

import datetime as dt

import pytest

from annotation_ui.assignment import (
    Rejected,
    claim_next,
    normalise_ranks,
    progress,
    reopen_last,
    skip_item,
    submit_ranking,
)
from annotation_ui.items import build_items
from annotation_ui.users import User
from codealign.errors import UserError
from db.models import (
    Annotator,
    Assignment,
    Completion,
    Execution,
    Ranking,
    RankingEntry,
    RankingItem,
    Task,
    utcnow,
)
from db.session import Database, session_scope

TTL = 30.0


def add_task(session, name: str, verdicts: list[str], split: str = "test") -> int:
    task = Task(
        task_id=name,
        source="t",
        split=split,
        prompt="def f(x):\n",
        entry_point="f",
        tests=["assert f(1) == 1"],
        content_hash=name,
        created_by="test",
    )
    session.add(task)
    session.flush()
    for i, verdict in enumerate(verdicts):
        c = Completion(task_id=task.id, text=f"    return x + {i}\n", sample_index=i, created_by="test")
        session.add(c)
        session.flush()
        session.add(
            Execution(
                completion_id=c.id,
                verdict=verdict,
                tests_passed=int(verdict == "passed"),
                tests_total=1,
                isolation="none",
                created_by="test",
            )
        )
    session.flush()
    return task.id


def make_users(session, *names) -> list[User]:
    users = []
    for name in names:
        row = Annotator(name=name, password_hash="x", role="annotator", created_by="test")
        session.add(row)
        session.flush()
        users.append(User(row.id, name, row.role, True))
    return users


def build(session, k=2, selection="execution_ties_first", required=1, **kw):
    return build_items(session, k=k, selection=selection, required_annotations=required, seed=0, **kw)


def test_execution_ties_first_groups_passing_completions_and_ranks_them_first(db_url):
    with session_scope(db_url) as s:
        add_task(s, "mixed", ["failed", "passed", "failed", "passed", "passed"])
        add_task(s, "all_fail", ["failed", "failed"])
        assert build(s, k=2) == 3  # mixed: [p,p] + [p,f] (one f left over); all_fail: [f,f]
        assert build(s, k=2) == 0  # completions are used once
        items = s.query(RankingItem).order_by(RankingItem.priority.desc()).all()
        assert [i.execution_tie for i in items] == [True, False, False]
        assert items[0].priority >= 1.0 > items[1].priority
        assert all(len(i.completion_ids) == 2 for i in items)


def test_random_policy_ignores_ties_and_identical_texts_are_grouped_once(db_url):
    with session_scope(db_url) as s:
        tid = add_task(s, "t", ["passed", "passed", "passed"])
        s.add(
            Completion(task_id=tid, text="    return x + 0\n", sample_index=9, created_by="test")
        )  # dup, unscored
        assert build(s, k=3, selection="random") == 1
        item = s.query(RankingItem).one()
        assert 0.0 <= item.priority < 1.0 and item.execution_tie


def test_build_items_filters_by_split_and_rejects_bad_arguments(db_url):
    with session_scope(db_url) as s:
        add_task(s, "train_task", ["passed", "failed"], split="train")
        assert build(s, split="test") == 0
        assert build(s, split="train") == 1
        with pytest.raises(UserError, match="between 2 and 8"):
            build(s, k=9)
        with pytest.raises(UserError, match="selection policy"):
            build(s, selection="newest")
        with pytest.raises(UserError, match="scorer"):
            build(s, selection="reward_uncertainty")


def _rank_everything(s, users) -> None:
    """Each user, in turn, claims and ranks items until nothing is left for anyone (the service layer)."""
    progressing = True
    while progressing:
        progressing = False
        for user in users:
            view = claim_next(s, user, claim_ttl_minutes=TTL)
            if view is not None:
                submit_ranking(s, user, view.assignment_id, list(range(1, len(view.completions) + 1)))
                progressing = True


def test_overlap_share_lets_two_annotators_share_items_and_agreement_appear(db_url):
    from annotation_ui.quality import quality_report

    with session_scope(db_url) as s:
        for t in range(10):
            add_task(s, f"t{t}", ["passed", "failed"])
        assert build(s, required=1, overlap_share=0.3, overlap_annotations=2) == 10
        needs = sorted(i.required_annotations for i in s.query(RankingItem))
        assert needs == [1] * 7 + [2] * 3  # a seeded share, the rest as asked
        _rank_everything(s, make_users(s, "ann", "bob"))
        agreement = quality_report(s).agreement
        assert agreement.shared_items == 3 and agreement.mean_tau_b is not None


def test_without_overlap_two_annotators_never_share_an_item(db_url):
    from annotation_ui.quality import quality_report

    with session_scope(db_url) as s:
        for t in range(4):
            add_task(s, f"t{t}", ["passed", "failed"])
        build(s, required=1)
        _rank_everything(s, make_users(s, "ann", "bob"))
        assert quality_report(s).agreement.shared_items == 0


def test_overlap_is_deterministic_and_leaves_the_items_as_they_were(db_url):
    def items(overlap_share):
        with session_scope(db_url) as s:
            s.query(RankingItem).delete()
            build(s, required=1, overlap_share=overlap_share)
            rows = s.query(RankingItem).order_by(RankingItem.id).all()
            return [(tuple(i.completion_ids), i.priority, i.required_annotations) for i in rows]

    with session_scope(db_url) as s:
        for t in range(8):
            add_task(s, f"t{t}", ["passed", "failed", "passed", "failed"])
    plain, first, again = items(0.0), items(0.25), items(0.25)
    assert first == again and [r[:2] for r in first] == [r[:2] for r in plain]
    assert sorted(r[2] for r in first) == [1] * 12 + [3] * 4  # default overlap_annotations=3


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"overlap_share": 1.5}, "overlap_share: must be a number from 0 to 1"),
        ({"overlap_share": -0.1}, "overlap_share"),
        ({"overlap_share": "half"}, "overlap_share"),
        ({"overlap_annotations": 1}, "overlap_annotations: must be an integer >= 2"),
        ({"overlap_annotations": 2.5}, "overlap_annotations"),
    ],
)
def test_bad_overlap_arguments_are_one_line_errors(db_url, kw, message):
    with session_scope(db_url) as s, pytest.raises(UserError, match=message):
        build(s, **kw)


def test_reward_uncertainty_puts_close_scores_first(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed"] * 4)
        scores = {
            "    return x + 0\n": 0.0,
            "    return x + 1\n": 0.9,
            "    return x + 2\n": 0.5,
            "    return x + 3\n": 0.55,
        }
        assert (
            build(s, k=2, selection="reward_uncertainty", scorer=lambda texts: [scores[t] for t in texts])
            == 2
        )
        spreads = []
        for item in s.query(RankingItem).order_by(RankingItem.priority.desc()):
            values = [scores[s.get(Completion, c).text] for c in item.completion_ids]
            spreads.append(max(values) - min(values))
        assert spreads == sorted(spreads)  # the closest-scored (most uncertain) item comes first


def test_claims_respect_required_annotations_and_never_repeat(db_url):
    now = utcnow()
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed", "failed"])
        build(s, required=2)
        ann, bob, cat = make_users(s, "ann", "bob", "cat")
        a1 = claim_next(s, ann, claim_ttl_minutes=TTL, now=now)
        assert claim_next(s, ann, claim_ttl_minutes=TTL, now=now).assignment_id == a1.assignment_id  # reload
        b1 = claim_next(s, bob, claim_ttl_minutes=TTL, now=now)
        assert b1.item_id == a1.item_id
        assert claim_next(s, cat, claim_ttl_minutes=TTL, now=now) is None  # two live claims fill it
        submit_ranking(s, ann, a1.assignment_id, [1, 2], now=now)
        assert claim_next(s, ann, claim_ttl_minutes=TTL, now=now) is None  # never shown twice
        later = now + dt.timedelta(minutes=TTL + 1)  # bob abandoned his tab
        c1 = claim_next(s, cat, claim_ttl_minutes=TTL, now=later)
        assert c1 is not None and c1.item_id == a1.item_id
        assert s.get(Assignment, b1.assignment_id).status == "expired"
        # bob's late answer is still stored: no judgment is thrown away
        assert not submit_ranking(s, bob, b1.assignment_id, [2, 1], now=later).edited
        assert s.query(Ranking).count() == 2


def test_display_order_is_per_annotator_and_stored(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed"] * 8)
        build(s, k=8, required=5)
        users = make_users(s, "u1", "u2", "u3", "u4", "u5")
        views = [claim_next(s, u, claim_ttl_minutes=TTL) for u in users]
        orders = [tuple(c.completion_id for c in v.completions) for v in views]
        assert len(set(orders)) > 1 and all(sorted(o) == sorted(orders[0]) for o in orders)
        for view in views:
            assert tuple(s.get(Assignment, view.assignment_id).display_order) == tuple(
                c.completion_id for c in view.completions
            )
        assert [c.label for c in views[0].completions] == list("ABCDEFGH")


def test_submission_maps_display_positions_to_completions(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed", "passed", "failed"])
        build(s, k=3)
        (ann,) = make_users(s, "ann")
        view = claim_next(s, ann, claim_ttl_minutes=TTL)
        submit_ranking(s, ann, view.assignment_id, ["3", "1", "1"], comment=" fine ")
        ranking = s.query(Ranking).one()
        got = {e.completion_id: e.rank for e in ranking.entries}
        shown = [c.completion_id for c in view.completions]
        assert got == {shown[0]: 2, shown[1]: 1, shown[2]: 1}  # dense ranks; B and C tie
        assert ranking.comment == "fine" and ranking.created_by == "annotator:ann" and not ranking.flagged


def test_skip_frees_the_slot_for_others_and_needs_a_reason(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed", "failed"])
        build(s, required=1)
        ann, bob = make_users(s, "ann", "bob")
        view = claim_next(s, ann, claim_ttl_minutes=TTL)
        with pytest.raises(Rejected, match="needs a reason"):
            skip_item(s, ann, view.assignment_id, "  ")
        skip_item(s, ann, view.assignment_id, "prompt is unclear", flag_reason="tests look wrong")
        assert claim_next(s, ann, claim_ttl_minutes=TTL) is None
        assert claim_next(s, bob, claim_ttl_minutes=TTL).item_id == view.item_id
        row = s.query(Ranking).one()
        assert row.skipped and row.skip_reason == "prompt is unclear" and row.flagged
        assert progress(s, ann).skipped == 1


def test_undo_reopens_and_edits_only_the_latest_answer(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t1", ["passed", "failed"])
        add_task(s, "t2", ["passed", "failed"])
        build(s)
        (ann,) = make_users(s, "ann")
        first = claim_next(s, ann, claim_ttl_minutes=TTL)
        submit_ranking(s, ann, first.assignment_id, [1, 2])
        second = claim_next(s, ann, claim_ttl_minutes=TTL)
        reopened = reopen_last(s, ann)
        assert reopened.assignment_id == first.assignment_id and reopened.ranks == [1, 2] and reopened.editing
        assert submit_ranking(s, ann, first.assignment_id, [2, 1], comment="changed my mind").edited
        ranking = s.query(Ranking).one()
        shown = [c.completion_id for c in first.completions]
        assert ranking.updated_at is not None and ranking.comment == "changed my mind"
        assert {e.completion_id: e.rank for e in s.query(RankingEntry)} == {shown[0]: 2, shown[1]: 1}
        # the live claim is still there after the edit
        assert claim_next(s, ann, claim_ttl_minutes=TTL).assignment_id == second.assignment_id
        submit_ranking(s, ann, second.assignment_id, [1, 1])
        with pytest.raises(Rejected, match="only the latest"):
            submit_ranking(s, ann, first.assignment_id, [1, 2])


@pytest.mark.parametrize(
    "ranks,message",
    [
        ([1], "2 completions"),
        ([1, 3], "from 1 to 2"),
        ([0, 1], "from 1 to 2"),
        ([1, None], "has no rank"),
        ([1, "two"], "from 1 to 2"),
        ([1, 2.5], "from 1 to 2"),
        ([True, 2], "from 1 to 2"),
        ([1, 2, 1], "slot"),
        ("1,2", "must be a list"),
    ],
)
def test_malformed_rankings_are_rejected_and_nothing_is_written(db_url, ranks, message):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed", "failed"])
        build(s)
        (ann,) = make_users(s, "ann")
        view = claim_next(s, ann, claim_ttl_minutes=TTL)
        with pytest.raises(Rejected, match=message):
            submit_ranking(s, ann, view.assignment_id, ranks)
        assert s.query(Ranking).count() == 0


def test_forged_and_repeated_submissions_are_rejected(db_url):
    with session_scope(db_url) as s:
        add_task(s, "t", ["passed", "failed"])
        build(s, required=2)
        ann, bob = make_users(s, "ann", "bob")
        view = claim_next(s, ann, claim_ttl_minutes=TTL)
        for forged in (view.assignment_id + 100, "1 OR 1=1", None, 10**30, -1, "1e3"):
            with pytest.raises(Rejected):
                submit_ranking(s, ann, forged, [1, 2])
        with pytest.raises(Rejected, match="not yours"):
            submit_ranking(s, bob, view.assignment_id, [1, 2])
        with pytest.raises(Rejected, match="limit"):
            submit_ranking(s, ann, view.assignment_id, [1, 2], comment="x" * 6000)
        with pytest.raises(Rejected, match="NUL"):
            submit_ranking(s, ann, view.assignment_id, [1, 2], flag_reason="bad\x00")
        submit_ranking(s, ann, view.assignment_id, [1, 2])
        assert submit_ranking(s, ann, view.assignment_id, [2, 1]).edited  # a resubmit edits, never duplicates
        assert s.query(Ranking).count() == 1


def test_tampered_item_is_refused(db_url):
    with session_scope(db_url) as s:
        t1 = add_task(s, "t1", ["passed", "failed"])
        add_task(s, "t2", ["passed", "failed"])
        build(s)
        (ann,) = make_users(s, "ann")
        view = claim_next(s, ann, claim_ttl_minutes=TTL)
        other = (
            s.query(Completion).filter(Completion.task_id != s.get(RankingItem, view.item_id).task_id).first()
        )
        item = s.get(RankingItem, view.item_id)
        item.completion_ids = [item.completion_ids[0], other.id]
        s.get(Assignment, view.assignment_id).display_order = list(item.completion_ids)
        s.flush()
        with pytest.raises(Rejected, match="belong to its task"):
            submit_ranking(s, ann, view.assignment_id, [1, 2])
        assert s.query(Ranking).count() == 0 and t1


def test_normalise_ranks_is_dense_and_progress_counts():
    assert normalise_ranks([1, 3, 3, 4], 4) == [1, 2, 2, 3]
    assert normalise_ranks(["2", "2"], 2) == [1, 1]
    assert normalise_ranks([2, 1, None, None], 2) == [2, 1]


@pytest.mark.postgres
def test_assignment_export_and_arena_queries_on_postgres(pg_empty_url):
    """The same SQL on PostgreSQL (the team deployment): claims with FOR UPDATE, JSON ids, aggregates."""
    from annotation_ui.arena import cast_vote, leaderboard, next_pair
    from annotation_ui.export import ExportConfig, collect_preferences
    from annotation_ui.quality import quality_report
    from annotation_ui.sample_data import seed_sample_data
    from db.migrate import upgrade

    upgrade(Database.at(pg_empty_url))
    with session_scope(pg_empty_url) as s:
        seed_sample_data(s, tasks=4, per_policy=2)
        assert build(s, k=2, required=2) > 0
        ann, bob = make_users(s, "ann", "bob")
        for user in (ann, bob):
            view = claim_next(s, user, claim_ttl_minutes=TTL)
            submit_ranking(s, user, view.assignment_id, [1, 2])
        skip_item(s, ann, claim_next(s, ann, claim_ttl_minutes=TTL).assignment_id, "unclear")
        assert progress(s, ann).done == 1 and progress(s, ann).skipped == 1
        assert len(collect_preferences(s, ExportConfig(consensus="mean_rank"))) == 1
        assert quality_report(s).agreement.shared_items == 1
        pair = next_pair(s, ann, "sft", "dpo", split="test")
        cast_vote(s, ann, pair.vote_id, "right")
        assert {r.policy for r in leaderboard(s, split="test", rounds=5)} == {"sft", "dpo"}
