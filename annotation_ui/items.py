"""Turn scored completions into ranking items (groups of K completions of one task). No gradio import.

Selection policies set ``RankingItem.priority`` (the app serves the highest first):

* ``random``: a random order.
* ``execution_ties_first``: items with two or more passing completions first. Execution already decides
  correctness elsewhere; what is missing there is human judgment on readability (GUIDE §2, §7). Passing
  completions are grouped together so that such items exist whenever a task has >= 2 passing samples.
* ``reward_uncertainty``: items whose completions a reward model scores closest together first. Needs a
  ``scorer`` (completion texts -> scores); none ships yet, the hook is here for when a reward model exists.

Guarantees: a completion is put in at most one item (re-running adds items only for new completions);
identical texts within a task are grouped at most once; only completions with an ``Execution`` row are used
("scored"). Non-guarantee: leftover completions (fewer than K per task) wait for more samples.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignment.errors import UserError
from annotation_ui.config import MAX_K, SELECTION_POLICIES
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


def _priority(policy: str, group: list[tuple[Completion, Execution]], rng: random.Random, scorer) -> float:
    jitter = rng.random()  # random order within a priority class
    if policy == "random":
        return jitter
    if policy == "execution_ties_first":
        return (1.0 if _is_execution_tie(group) else 0.0) + jitter
    scores = [float(s) for s in scorer([c.text for c, _ in group])]
    return -(max(scores) - min(scores)) + 1e-6 * jitter  # closest scores = most uncertain = first


def _is_execution_tie(group: list[tuple[Completion, Execution]]) -> bool:
    return sum(e.verdict == "passed" for _, e in group) >= 2


def build_items(
    session: Session,
    *,
    k: int,
    policy: str,
    required_annotations: int,
    seed: int,
    source: str | None = None,
    split: str | None = None,
    scorer: Scorer | None = None,
    created_by: str = "cli:build_items",
) -> int:
    """Create ``RankingItem`` rows of ``k`` completions from scored, not yet itemised completions.

    Returns the number of items created (0 when nothing new). Raises ``UserError`` for a bad ``k``,
    ``policy`` or ``required_annotations``, or ``reward_uncertainty`` without a ``scorer``.
    """
    if not 2 <= k <= MAX_K:
        raise UserError(f"k: must be between 2 and {MAX_K}, got {k}")
    if policy not in SELECTION_POLICIES:
        raise UserError(f"selection policy {policy!r}: must be one of {', '.join(SELECTION_POLICIES)}")
    if policy == "reward_uncertainty" and scorer is None:
        raise UserError(
            "selection policy 'reward_uncertainty' needs a reward model scorer; none is configured"
        )
    if required_annotations < 1:
        raise UserError(f"required_annotations: must be >= 1, got {required_annotations}")
    rng = random.Random(seed)
    used = _used_completion_ids(session)
    created = 0
    for task_id, pairs in _scored_completions_by_task(session, source, split).items():
        fresh = _distinct_texts([(c, e) for c, e in pairs if c.id not in used])
        rng.shuffle(fresh)
        if policy == "execution_ties_first":
            fresh.sort(key=lambda ce: ce[1].verdict != "passed")  # stable: passing ones first, still shuffled
        for start in range(0, len(fresh) - k + 1, k):
            group = fresh[start : start + k]
            session.add(
                RankingItem(
                    task_id=task_id,
                    completion_ids=[c.id for c, _ in group],
                    required_annotations=required_annotations,
                    priority=_priority(policy, group, rng, scorer),
                    execution_tie=_is_execution_tie(group),
                    created_by=created_by,
                )
            )
            created += 1
    session.flush()
    return created
