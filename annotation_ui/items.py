"""Turn scored completions into ranking items (groups of K completions of one task). No gradio import.

Selection policies set ``RankingItem.priority`` (the app serves the highest first):

* ``random``: a random order.
* ``execution_ties_first``: items with two or more passing completions first. Execution already decides
  correctness elsewhere; what is missing there is human judgment on readability (CodeRL, AceCoder and DeepSeek-Coder label correctness by execution). Passing
  completions are grouped together so that such items exist whenever a task has >= 2 passing samples.
* ``reward_uncertainty``: items whose completions a reward model scores closest together first. Needs a
  ``scorer`` (completion texts -> scores); none ships yet, the hook is here for when a reward model exists.

Overlap: ``overlap_share`` of the items created by one call (chosen by ``seed``) need
``max(required_annotations, overlap_annotations)`` annotators, the rest ``required_annotations``. With
``required_annotations=1`` every item is ranked once (most items for the work) and agreement can only be
measured on the overlapping share.

Guarantees: a completion is put in at most one item (re-running adds items only for new completions);
identical texts within a task are grouped at most once; only completions with an ``Execution`` row are used
("scored"); the same DB and arguments give the same items and the same overlapping share. With
``overlap_share > 0`` at least one new item overlaps. Non-guarantee: leftover completions (fewer than K per
task) wait for more samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_ui.config import MAX_K, SELECTION_POLICIES
from codealign.errors import UserError
from db.models import Completion, Execution, RankingItem, Task

Scorer = Callable[[Sequence[str]], Sequence[float]]


def _used_completion_ids(session: Session) -> set[int]:
    used: set[int] = set()
    for ids in session.scalars(select(RankingItem.completion_ids)):
        used.update(int(i) for i in ids)
    return used


def _scored_completions_by_task(
    session: Session, source: str | None, split: str | None
) -> dict[int, list[tuple[Completion, Execution]]]:
    query = (
        select(Completion, Execution)
        .join(Execution, Execution.completion_id == Completion.id)
        .join(Task, Task.id == Completion.task_id)
        .order_by(Completion.task_id, Completion.id)
    )
    if source is not None:
        query = query.where(Task.source == source)
    if split is not None:
        query = query.where(Task.split == split)
    by_task: dict[int, list[tuple[Completion, Execution]]] = {}
    for completion, execution in session.execute(query):
        by_task.setdefault(completion.task_id, []).append((completion, execution))
    return by_task


def _distinct_texts(pairs: list[tuple[Completion, Execution]]) -> list[tuple[Completion, Execution]]:
    seen: set[str] = set()
    out = []
    for completion, execution in pairs:
        key = completion.text.strip()
        if key not in seen:
            seen.add(key)
            out.append((completion, execution))
    return out


def _priority(selection: str, group: list[tuple[Completion, Execution]], rng: random.Random, scorer) -> float:
    jitter = rng.random()  # random order within a priority class
    if selection == "random":
        return jitter
    if selection == "execution_ties_first":
        return (1.0 if _is_execution_tie(group) else 0.0) + jitter
    scores = [float(s) for s in scorer([c.text for c, _ in group])]
    return -(max(scores) - min(scores)) + 1e-6 * jitter  # closest scores = most uncertain = first


def _is_execution_tie(group: list[tuple[Completion, Execution]]) -> bool:
    return sum(e.verdict == "passed" for _, e in group) >= 2


def build_items(
    session: Session,
    *,
    k: int,
    selection: str,
    required_annotations: int,
    seed: int,
    source: str | None = None,
    split: str | None = None,
    scorer: Scorer | None = None,
    created_by: str = "cli:build_items",
    overlap_share: float = 0.0,
    overlap_annotations: int = 3,
) -> int:
    """Create ``RankingItem`` rows of ``k`` completions from scored, not yet itemised completions.

    Returns the number of items created (0 when nothing new). Raises ``UserError`` for a bad ``k``,
    ``selection``, ``required_annotations``, ``overlap_share`` or ``overlap_annotations``, or
    ``reward_uncertainty`` without a ``scorer``.
    """
    if not 2 <= k <= MAX_K:
        raise UserError(f"k: must be between 2 and {MAX_K}, got {k}")
    if selection not in SELECTION_POLICIES:
        raise UserError(f"selection policy {selection!r}: must be one of {', '.join(SELECTION_POLICIES)}")
    if selection == "reward_uncertainty" and scorer is None:
        raise UserError(
            "selection policy 'reward_uncertainty' needs a reward model scorer; none is configured"
        )
    if required_annotations < 1:
        raise UserError(f"required_annotations: must be >= 1, got {required_annotations}")
    if not (isinstance(overlap_share, (int, float)) and 0.0 <= overlap_share <= 1.0):
        raise UserError(f"overlap_share: must be a number from 0 to 1, got {overlap_share!r}")
    if (
        isinstance(overlap_annotations, bool)
        or not isinstance(overlap_annotations, int)
        or overlap_annotations < 2
    ):
        raise UserError(f"overlap_annotations: must be an integer >= 2, got {overlap_annotations!r}")
    rng = random.Random(seed)
    used = _used_completion_ids(session)
    created: list[RankingItem] = []
    for task_id, pairs in _scored_completions_by_task(session, source, split).items():
        fresh = _distinct_texts([(c, e) for c, e in pairs if c.id not in used])
        rng.shuffle(fresh)
        if selection == "execution_ties_first":
            fresh.sort(key=lambda ce: ce[1].verdict != "passed")  # stable: passing ones first, still shuffled
        for start in range(0, len(fresh) - k + 1, k):
            group = fresh[start : start + k]
            item = RankingItem(
                task_id=task_id,
                completion_ids=[c.id for c, _ in group],
                required_annotations=required_annotations,
                priority=_priority(selection, group, rng, scorer),
                execution_tie=_is_execution_tie(group),
                created_by=created_by,
            )
            session.add(item)
            created.append(item)
    _mark_overlap(created, overlap_share, max(required_annotations, overlap_annotations), seed)
    session.flush()
    return len(created)


def _mark_overlap(items: list[RankingItem], share: float, annotations: int, seed: int) -> None:
    """Give ``share`` of ``items`` (at least one when ``share > 0``) ``annotations`` required annotators.
    Its own RNG: the items' composition and priorities do not depend on the overlap settings."""
    if share <= 0 or not items:
        return
    count = max(1, math.floor(share * len(items) + 0.5))  # round half up; at least one overlapping item
    for item in random.Random(f"overlap:{seed}").sample(items, min(count, len(items))):
        item.required_annotations = annotations
