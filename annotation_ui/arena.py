"""Reviewer arena: blind A/B votes between two policies on held-out tasks, and the Bradley-Terry leaderboard.

Blindness guarantees: the page gets code and execution results only, labelled Left/Right; which side holds
which policy is drawn from the OS RNG per pair and stored (``ArenaVote.left_is_a``); names are returned only
by :func:`cast_vote`, after the vote is stored. A reviewer may vote once per pair; a pending pair is shown
again after a reload instead of drawing a new one (no fishing for an easier task).
Math: ties and "both bad" count half a win to each side (as in Chatbot Arena); ratings on the Elo scale
(400 log10 strength + 1000) with a weak prior (one virtual tie against a 1000-rated anchor per policy) so a
policy without a loss still has a finite rating; 95% intervals from resampling votes with replacement.
No gradio import; numpy and matplotlib are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from annotation_ui.assignment import Rejected, parse_id
from annotation_ui.users import User
from annotation_ui.views import CompletionView, load_completion_views
from db.models import ArenaVote, Completion, Execution, Policy, Task, utcnow

CHOICES = ("left", "right", "tie", "both_bad")


@dataclass
class ArenaPair:
    vote_id: int
    task_name: str
    prompt: str
    left: CompletionView
    right: CompletionView


@dataclass
class Reveal:
    left_policy: str
    right_policy: str
    choice: str


@dataclass
class LeaderRow:
    policy: str
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: float  # ties count 0.5
    pass_rate: float | None  # share of the policy's executed completions on the arena split that pass
    executed: int


def arena_policies(session: Session, split: str) -> list[str]:
    """Names of policies with at least one completion on a task of ``split``."""
    query = (
        select(Policy.name)
        .join(Completion, Completion.policy_id == Policy.id)
        .join(Task, Task.id == Completion.task_id)
        .where(Task.split == split)
        .distinct()
        .order_by(Policy.name)
    )
    return list(session.scalars(query))


def _policy(session: Session, name) -> Policy:
    row = session.scalar(select(Policy).where(Policy.name == str(name))) if name else None
    if row is None:
        raise Rejected(f"no policy named {name!r}")
    return row


def _pair_view(session: Session, vote: ArenaVote) -> ArenaPair:
    task = session.get(Task, vote.task_id)
    a, b = load_completion_views(session, [vote.completion_a_id, vote.completion_b_id])
    left, right = (a, b) if vote.left_is_a else (b, a)
    left.label, right.label = "Left", "Right"
    return ArenaPair(vote_id=vote.id, task_name=task.task_id, prompt=task.prompt, left=left, right=right)


def next_pair(session: Session, user: User, policy_a: str, policy_b: str, *, split: str) -> ArenaPair:
    """A blind pair of one completion per policy on a ``split`` task (the pending one, if any)."""
    a, b = _policy(session, policy_a), _policy(session, policy_b)
    if a.id == b.id:
        raise Rejected("pick two different policies")
    same_pair = or_(
        (ArenaVote.policy_a_id == a.id) & (ArenaVote.policy_b_id == b.id),
        (ArenaVote.policy_a_id == b.id) & (ArenaVote.policy_b_id == a.id),
    )
    pending = session.scalar(
        select(ArenaVote).where(ArenaVote.reviewer_id == user.id, ArenaVote.winner.is_(None), same_pair)
    )
    if pending is not None:
        return _pair_view(session, pending)
    tasks_of = {
        p.id: set(
            session.scalars(
                select(Completion.task_id)
                .join(Task, Task.id == Completion.task_id)
                .where(Completion.policy_id == p.id, Task.split == split)
            )
        )
        for p in (a, b)
    }
    common = tasks_of[a.id] & tasks_of[b.id]
    if not common:
        raise Rejected(f"policies {a.name!r} and {b.name!r} have no completions on a common {split!r} task")
    voted = set(session.scalars(select(ArenaVote.task_id).where(ArenaVote.reviewer_id == user.id, same_pair)))
    rng = random.SystemRandom()
    task_id = rng.choice(sorted(common - voted) or sorted(common))
    picks = [
        rng.choice(
            list(
                session.scalars(
                    select(Completion.id).where(Completion.task_id == task_id, Completion.policy_id == p.id)
                )
            )
        )
        for p in (a, b)
    ]
    vote = ArenaVote(
        reviewer_id=user.id,
        task_id=task_id,
        policy_a_id=a.id,
        policy_b_id=b.id,
        completion_a_id=picks[0],
        completion_b_id=picks[1],
        left_is_a=rng.random() < 0.5,
        created_by=user.actor,
    )
    session.add(vote)
    session.flush()
    return _pair_view(session, vote)


def cast_vote(session: Session, user: User, vote_id, choice: str) -> Reveal:
    """Store the vote on a pending pair of this reviewer; return the policy names behind the sides."""
    if choice not in CHOICES:
        raise Rejected(f"vote {choice!r}: must be one of {', '.join(CHOICES)}")
    vote = session.get(ArenaVote, parse_id(vote_id, "arena pair id"))
    if vote is None or vote.reviewer_id != user.id:
        raise Rejected(f"arena pair {vote_id} is not yours")
    if vote.winner is not None:
        raise Rejected(f"arena pair {vote.id} already has a vote")
    left_side, right_side = ("a", "b") if vote.left_is_a else ("b", "a")
    vote.winner = {"left": left_side, "right": right_side}.get(choice, choice)
    vote.voted_at = utcnow()
    session.flush()
    names = {vote.policy_a_id: None, vote.policy_b_id: None}
    for pid, name in session.execute(select(Policy.id, Policy.name).where(Policy.id.in_(names))):
        names[pid] = name
    a_name, b_name = names[vote.policy_a_id], names[vote.policy_b_id]
    left, right = (a_name, b_name) if vote.left_is_a else (b_name, a_name)
    return Reveal(left_policy=left, right_policy=right, choice=choice)


def bradley_terry(n_players: int, games: list[tuple[int, int, float]], prior: float = 1.0, iters: int = 500):
    """Bradley-Terry ratings (Elo scale) from ``games: (i, j, score of i)`` with score 1, 0 or 0.5.

    Minorise-maximise updates (Hunter 2004) with ties as half wins. ``prior`` virtual ties per player
    against an anchor of strength 1 (rating 1000) keep undefeated players finite; with ``prior=0``
    ratings are centred on a geometric mean of 1 instead. Returns a numpy array of ``n_players`` ratings.
    """
    import numpy as np

    wins = np.full(n_players, prior / 2.0)
    pairs = np.zeros((n_players, n_players))
    for i, j, score in games:
        wins[i] += score
        wins[j] += 1.0 - score
        pairs[i, j] += 1
        pairs[j, i] += 1
    strength = np.ones(n_players)
    for _ in range(iters):
        denominator = (pairs / (strength[:, None] + strength[None, :])).sum(axis=1) + prior / (strength + 1.0)
        updated = np.where(denominator > 0, wins / np.maximum(denominator, 1e-300), strength)
        updated = np.maximum(updated, 1e-12)
        if prior == 0:
            updated /= math.exp(np.log(updated).mean())
        converged = np.max(np.abs(np.log(updated) - np.log(strength))) < 1e-10
        strength = updated
        if converged:
            break
    return 400.0 * np.log10(strength) + 1000.0


def _pass_rates(session: Session, policy_ids: list[int], split: str) -> dict[int, tuple[float | None, int]]:
    rows = session.execute(
        select(
            Completion.policy_id,
            func.count(Execution.id),
            func.sum(case((Execution.verdict == "passed", 1), else_=0)),
        )
        .join(Execution, Execution.completion_id == Completion.id)
        .join(Task, Task.id == Completion.task_id)
        .where(Completion.policy_id.in_(policy_ids), Task.split == split)
        .group_by(Completion.policy_id)
    ).all()
    rates = {pid: (None, 0) for pid in policy_ids}
    for pid, executed, passed in rows:
        rates[pid] = ((passed or 0) / executed if executed else None, executed)
    return rates


def leaderboard(session: Session, *, split: str, rounds: int, seed: int = 0) -> list[LeaderRow]:
    """Every policy with a stored vote, best first, with bootstrap 95% intervals and pass rates."""
    import numpy as np

    votes = session.execute(
        select(ArenaVote.policy_a_id, ArenaVote.policy_b_id, ArenaVote.winner).where(
            ArenaVote.winner.is_not(None)
        )
    ).all()
    if not votes:
        return []
    ids = sorted({v[0] for v in votes} | {v[1] for v in votes})
    index = {pid: i for i, pid in enumerate(ids)}
    score_of = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}
    games = [(index[a], index[b], score_of[w]) for a, b, w in votes]
    ratings = bradley_terry(len(ids), games)
    low, high = ratings.copy(), ratings.copy()
    if rounds > 0:
        rng = np.random.default_rng(seed)
        samples = np.array(
            [
                bradley_terry(len(ids), [games[k] for k in rng.integers(0, len(games), len(games))])
                for _ in range(rounds)
            ]
        )
        low, high = np.percentile(samples, 2.5, axis=0), np.percentile(samples, 97.5, axis=0)
    wins: dict[int, float] = defaultdict(float)
    played: dict[int, int] = defaultdict(int)
    for i, j, s in games:
        wins[i] += s
        wins[j] += 1 - s
        played[i] += 1
        played[j] += 1
    names = dict(session.execute(select(Policy.id, Policy.name).where(Policy.id.in_(ids))).all())
    rates = _pass_rates(session, ids, split)
    rows = [
        LeaderRow(
            policy=names[pid],
            rating=float(ratings[i]),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            votes=played[i],
            wins=wins[i],
            pass_rate=rates[pid][0],
            executed=rates[pid][1],
        )
        for pid, i in index.items()
    ]
    return sorted(rows, key=lambda r: -r.rating)


def format_leaderboard(rows: list[LeaderRow]) -> str:
    lines = [f"{'policy':<28} {'rating':>7} {'95% CI':>17} {'votes':>6} {'wins':>6} {'pass rate':>10}"]
    for r in rows:
        rate = f"{100 * r.pass_rate:.1f}%" if r.pass_rate is not None else "-"
        ci = f"[{r.ci_low:.0f}, {r.ci_high:.0f}]"
        lines.append(f"{r.policy[:28]:<28} {r.rating:>7.0f} {ci:>17} {r.votes:>6} {r.wins:>6.1f} {rate:>10}")
    return "\n".join(lines)


def plot_leaderboard(rows: list[LeaderRow], path: str | Path | None = None):
    """Ratings with 95% intervals beside execution pass rates; saved as PNG when ``path`` is given."""
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to leak in a long-lived app

    ordered = list(reversed(rows))  # best at the top
    y = list(range(len(ordered)))
    fig = Figure(figsize=(9, 1.2 + 0.5 * max(1, len(rows))))
    ax_bt, ax_pass = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [2, 1]})
    ax_bt.errorbar(
        [r.rating for r in ordered],
        y,
        xerr=[[r.rating - r.ci_low for r in ordered], [r.ci_high - r.rating for r in ordered]],
        fmt="o",
        capsize=4,
    )
    ax_bt.set_yticks(y, [r.policy for r in ordered])
    ax_bt.set_xlabel("Bradley-Terry rating (Elo scale), 95% bootstrap CI")
    ax_pass.barh(y, [100 * (r.pass_rate or 0.0) for r in ordered], color="tab:green")
    ax_pass.set_xlim(0, 100)
    ax_pass.set_xlabel("execution pass rate (%)")
    for yi, r in zip(y, ordered):
        ax_pass.text(1, yi, "n/a" if r.pass_rate is None else f"{100 * r.pass_rate:.0f}%", va="center")
    fig.suptitle("Reviewer arena leaderboard")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
