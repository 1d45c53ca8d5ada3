"""Reviewer arena: Bradley-Terry math, blind pairing, vote validation, leaderboard and `codealign compare`."""

import math

import pytest

from alignment.cli import main
from annotation_ui.arena import bradley_terry, cast_vote, leaderboard, next_pair
from annotation_ui.assignment import Rejected
from annotation_ui.render import completion_html
from annotation_ui.sample_data import seed_sample_data
from annotation_ui.users import User
from db.models import Annotator, ArenaVote, Completion, Execution, Policy, Task
from db.session import session_scope

POLICIES = ("policy_alpha", "policy_beta")


def test_bradley_terry_two_players_hand_computed():
    games = [(0, 1, 1.0)] * 3 + [(0, 1, 0.0)]  # 3 wins to 1: strength ratio 3
    ratings = bradley_terry(2, games, prior=0.0)
    assert ratings[0] - ratings[1] == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert (ratings[0] + ratings[1]) / 2 == pytest.approx(1000.0)


def test_bradley_terry_ties_count_half_and_prior_keeps_ratings_finite():
    assert bradley_terry(2, [(0, 1, 0.5)] * 4, prior=0.0) == pytest.approx([1000.0, 1000.0])
    # 1 win + 2 ties = 2 points of 3: ratio 2
    ratings = bradley_terry(2, [(0, 1, 1.0), (0, 1, 0.5), (0, 1, 0.5)], prior=0.0)
    assert ratings[0] - ratings[1] == pytest.approx(400 * math.log10(2), abs=1e-3)
    undefeated = bradley_terry(2, [(0, 1, 1.0)] * 5, prior=1.0)
    assert all(math.isfinite(r) for r in undefeated) and undefeated[0] > 1000 > undefeated[1]


def test_bradley_terry_orders_a_transitive_tournament():
    games = [(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0), (0, 1, 0.0), (1, 2, 0.0)] * 3
    ratings = bradley_terry(3, games)
    assert ratings[0] > ratings[1] > ratings[2]


@pytest.fixture
def arena_db(db_url):
    with session_scope(db_url) as s:
        seed_sample_data(s, tasks=6, per_policy=1, policies=POLICIES)
        users = []
        for name in ("rev", "other"):
            row = Annotator(name=name, password_hash="x", role="reviewer", created_by="test")
            s.add(row)
            s.flush()
            users.append(User(row.id, name, "reviewer", True))
    return db_url, users


def test_pairs_are_blind_pending_pairs_reused_and_sides_random(arena_db):
    url, (rev, _) = arena_db
    lefts = set()
    with session_scope(url) as s:
        pair = next_pair(s, rev, *POLICIES, split="test")
        assert next_pair(s, rev, *reversed(POLICIES), split="test").vote_id == pair.vote_id  # no fishing
        for side in (pair.left, pair.right):
            page = completion_html(side, pair.prompt, show_execution=True, show_static=True)
            assert not any(name in page for name in POLICIES)
        assert {pair.left.label, pair.right.label} == {"Left", "Right"}
        for _ in range(40):
            pair = next_pair(s, rev, *POLICIES, split="test")
            vote = s.get(ArenaVote, pair.vote_id)
            lefts.add(vote.left_is_a)
            reveal = cast_vote(s, rev, pair.vote_id, "left")
            assert vote.winner == ("a" if vote.left_is_a else "b")
            left_policy = s.get(Policy, vote.policy_a_id if vote.left_is_a else vote.policy_b_id).name
            assert reveal.left_policy == left_policy
    assert lefts == {True, False}  # 41 fair coin flips all equal: p = 2^-40


def test_votes_are_validated(arena_db):
    url, (rev, other) = arena_db
    with session_scope(url) as s:
        pair = next_pair(s, rev, *POLICIES, split="test")
        with pytest.raises(Rejected, match="not yours"):
            cast_vote(s, other, pair.vote_id, "left")
        with pytest.raises(Rejected, match="must be one of"):
            cast_vote(s, rev, pair.vote_id, "A")
        with pytest.raises(Rejected, match="not a number"):
            cast_vote(s, rev, "<script>", "tie")
        cast_vote(s, rev, pair.vote_id, "both_bad")
        with pytest.raises(Rejected, match="already has a vote"):
            cast_vote(s, rev, pair.vote_id, "left")
        assert s.get(ArenaVote, pair.vote_id).winner == "both_bad"
        with pytest.raises(Rejected, match="two different"):
            next_pair(s, rev, POLICIES[0], POLICIES[0], split="test")
        with pytest.raises(Rejected, match="no policy"):
            next_pair(s, rev, "ghost", POLICIES[0], split="test")
        with pytest.raises(Rejected, match="no completions on a common"):
            next_pair(s, rev, *POLICIES, split="train")


def test_leaderboard_and_compare_cli(arena_db, db_url, tmp_path, capsys):
    url, (rev, _) = arena_db
    with session_scope(url) as s:
        for _ in range(12):
            pair = next_pair(s, rev, *POLICIES, split="test")
            vote = s.get(ArenaVote, pair.vote_id)
            alpha_is_left = s.get(Policy, vote.policy_a_id).name == POLICIES[0]
            alpha_is_left = alpha_is_left == vote.left_is_a
            cast_vote(s, rev, pair.vote_id, "left" if alpha_is_left else "right")  # alpha always wins
        expected_rate = {}
        for name in POLICIES:
            verdicts = [
                e.verdict
                for e in s.query(Execution)
                .join(Completion, Completion.id == Execution.completion_id)
                .join(Policy, Policy.id == Completion.policy_id)
                .join(Task, Task.id == Completion.task_id)
                .filter(Policy.name == name, Task.split == "test")
            ]
            expected_rate[name] = verdicts.count("passed") / len(verdicts)
        rows = leaderboard(s, split="test", rounds=50, seed=1)
    assert [r.policy for r in rows] == list(POLICIES)
    assert all(r.ci_low <= r.rating <= r.ci_high for r in rows) and rows[0].votes == 12 and rows[0].wins == 12
    assert {r.policy: r.pass_rate for r in rows} == pytest.approx(expected_rate)
    png = tmp_path / "board.png"
    assert main(["--db", db_url, "compare", "--png", str(png), "bootstrap_rounds=20"]) == 0
    out = capsys.readouterr().out
    assert out.index(POLICIES[0]) < out.index(POLICIES[1]) and "95% CI" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_without_votes_is_one_line_error(db_url, capsys):
    assert main(["--db", db_url, "compare"]) == 2
    assert "no arena votes" in capsys.readouterr().err
