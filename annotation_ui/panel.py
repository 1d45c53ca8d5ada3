"""A simulated annotator panel: stand-ins for people that rank through the app's own service layer.

As AlpacaFarm simulates annotators, each panel member judges with a hidden rubric plus its own noise:

* the rubric (:class:`PanelConfig`): correctness first — a passing program beats a failing one by
  ``correctness_weight``, partial credit adds ``partial_weight`` × share of tests passed —, then readability:
  ``issue_weight`` per readability issue the program has in its own lines (at most ``max_issues``, from
  :mod:`reward.readability`, as ``codealign score`` stored them), ``length_weight`` per line;
* per-member noise: Gumbel noise of scale ``noise[i]`` on each utility (a Bradley–Terry annotator), and ties
  when two noisy utilities are within ``tie_margin``.

Members are accounts like any other (role annotator, ``simulated=True`` in the DB, a random password nobody
knows) and rank with :func:`annotation_ui.assignment.claim_next` / ``submit_ranking``: what they store is
what a person's ranking stores, real annotators can join or replace them at any time, and agreement (the admin
page's τ-b and α) covers both. :func:`judge` is the same judgment for a blind pair (a fresh panel — another
``seed`` — judges the win rate of a policy against SFT, so the panel that trained the reward model does not
grade its own pupil).

Non-guarantee: the rubric is a model of a careful reviewer, not a measurement of people; the docs state the
numbers it gives as simulated.
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_ui import assignment
from annotation_ui.users import User, add_user
from annotation_ui.views import CompletionView
from codealign.errors import UserError
from db.models import Annotator


@dataclass
class PanelConfig:
    """Who is on the panel and how they judge (``configs/panel.yaml``)."""

    annotators: int = 5
    name_prefix: str = "panel"
    seed: int = 0
    noise: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9, 1.2])  # one per member, cycled
    tie_margin: float = 0.15
    correctness_weight: float = 3.0
    partial_weight: float = 1.0
    issue_weight: float = 0.6
    max_issues: int = 3
    length_weight: float = 0.02
    max_items_per_annotator: int | None = None  # leave items for people (None: rank all that are open)
    claim_ttl_minutes: float = 30.0

    def __post_init__(self) -> None:
        if self.annotators < 1 or not self.noise or any(n < 0 for n in self.noise):
            raise UserError("panel: annotators must be >= 1 and noise a non-empty list of scales >= 0")
        if self.tie_margin < 0:
            raise UserError(f"panel.tie_margin: must be >= 0, got {self.tie_margin}")


@dataclass
class PanelResult:
    annotators: list[str]
    rankings: int
    items: int  # distinct items ranked


def utility(view: CompletionView, cfg: PanelConfig) -> float:
    """The rubric's score of one completion (higher is better), before a member's noise."""
    passed = view.verdict == "passed"
    ratio = 1.0 if passed else (view.tests_passed / view.tests_total if view.tests_total else 0.0)
    issues = min(len(view.static_findings.get("readability") or []), cfg.max_issues)
    lines = sum(1 for line in view.text.splitlines() if line.strip())
    return (
        cfg.correctness_weight * passed
        + cfg.partial_weight * ratio
        - cfg.issue_weight * issues
        - cfg.length_weight * lines
    )


def _noisy(value: float, scale: float, rng: random.Random) -> float:
    return value + scale * -math.log(-math.log(rng.random() or 1e-12))  # + Gumbel(0, scale)


def ranks(views: list[CompletionView], cfg: PanelConfig, scale: float, rng: random.Random) -> list[int]:
    """Ranks (1 = best, equal = tie) one member gives, in the order of ``views``."""
    noisy = [_noisy(utility(v, cfg), scale, rng) for v in views]
    order = sorted(range(len(views)), key=lambda i: -noisy[i])
    out = [0] * len(views)
    rank, previous = 0, None
    for i in order:
        if previous is None or previous - noisy[i] > cfg.tie_margin:
            rank += 1
        out[i] = rank
        previous = noisy[i]
    return out


def judge(a: CompletionView, b: CompletionView, cfg: PanelConfig, scale: float, rng: random.Random) -> float:
    """One blind comparison: 1 when ``a`` wins, 0 when ``b`` does, 0.5 for a tie."""
    first, second = ranks([a, b], cfg, scale, rng)
    return 0.5 if first == second else float(first < second)


def members(session: Session, cfg: PanelConfig, created_by: str) -> list[User]:
    """The panel's accounts, created on first use (simulated, random unknown passwords)."""
    users = []
    for i in range(cfg.annotators):
        name = f"{cfg.name_prefix}-{i + 1:02d}"
        row = session.scalar(select(Annotator).where(Annotator.name == name))
        if row is None:
            add_user(session, name, secrets.token_urlsafe(24), "annotator", created_by=created_by)
            row = session.scalar(select(Annotator).where(Annotator.name == name))
            row.simulated = True
        elif not row.simulated:
            raise UserError(f"panel: account {name!r} exists and is a person's; set panel.name_prefix")
        users.append(User(row.id, row.name, row.role, row.active))
    session.flush()
    return users


def run_panel(
    db, cfg: PanelConfig, created_by: str = "panel:simulated", items: Collection[int] | None = None
) -> PanelResult:
    """Every member ranks the items open to them, one item each in turn, as people working side by side do
    (one member after another would leave the last members nothing: the first ones fill every item's
    overlap). One transaction per ranking, as the app does; ``items`` restricts them to those item ids."""
    with db.session() as session:
        users = members(session, cfg, created_by)
    rngs = {user.name: random.Random(f"{cfg.seed}/{user.name}") for user in users}
    done = {user.name: 0 for user in users}
    rankings, ranked = 0, set()
    active = list(enumerate(users))
    while active:
        still = []
        for index, user in active:
            if cfg.max_items_per_annotator is not None and done[user.name] >= cfg.max_items_per_annotator:
                continue
            with db.session() as session:
                view = assignment.claim_next(
                    session, user, claim_ttl_minutes=cfg.claim_ttl_minutes, seed=cfg.seed, among=items
                )
                if view is None:
                    continue
                scale = cfg.noise[index % len(cfg.noise)]
                order = ranks(view.completions, cfg, scale, rngs[user.name])
                assignment.submit_ranking(session, user, view.assignment_id, order)
            rankings, done[user.name] = rankings + 1, done[user.name] + 1
            ranked.add(view.item_id)
            still.append((index, user))
        active = still
    return PanelResult([u.name for u in users], rankings, len(ranked))
