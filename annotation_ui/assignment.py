"""Who ranks what: claims, submissions, skips, undo/edit, progress. Every app event lands here.

Each function takes the logged-in :class:`~annotation_ui.users.User` resolved by the server (never a name
sent by the client) and validates everything else against the DB: the assignment is this user's, the ranks
form a valid ordering of exactly the item's completions, free text is bounded. A refused event raises
:class:`Rejected` (a ``UserError``: one line, shown to the user) and writes nothing.

Assignment semantics:

* an item is open while ``done + live claims < required_annotations``; an annotator gets the open item
  with the highest priority that they have never been assigned (never shown twice to one person);
* a claim lives ``claim_ttl_minutes``; an expired claim frees its slot (an abandoned tab locks nothing),
  yet a late submission on it is still accepted and stored (no judgment is thrown away);
* a skip frees the slot for others; undo re-opens the user's latest submission for editing.

Concurrency: on SQLite, :func:`claim_next` starts with a write, so the choose-and-claim step runs under the
database write lock; on PostgreSQL the chosen item row is locked (``FOR UPDATE``) and re-counted. A
ranking is unique per (item, annotator) in the schema, so a double submit can never store two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from annotation_ui.users import User
from annotation_ui.views import CompletionView, load_completion_views
from codealign.errors import UserError
from db.models import Assignment, Completion, Ranking, RankingEntry, RankingItem, Task, utcnow

MAX_TEXT = 5000  # comment
MAX_REASON = 500  # skip / flag reason


class Rejected(UserError):
    """An event the server refuses (forged, stale or malformed); nothing was written."""


@dataclass
class Progress:
    done: int  # items this user ranked
    skipped: int
    open_items: int | None  # items still available to this user (None: not counted)


@dataclass
class ItemView:
    assignment_id: int
    item_id: int
    task_name: str
    prompt: str
    completions: list[CompletionView]  # in this user's display order
    ranks: list[int] | None = None  # pre-filled when editing
    comment: str = ""
    flag_reason: str = ""
    editing: bool = False


@dataclass
class SubmitResult:
    ranking_id: int
    edited: bool


def _live_claim(now: dt.datetime):
    return and_(Assignment.status == "claimed", Assignment.expires_at > now)


def _taken_slots(now: dt.datetime):
    """Correlated count of an item's done assignments plus live claims."""
    return (
        select(func.count(Assignment.id))
        .where(Assignment.item_id == RankingItem.id, or_(Assignment.status == "done", _live_claim(now)))
        .scalar_subquery()
    )


def _open_items_query(user: User, now: dt.datetime):
    never_assigned = ~exists().where(Assignment.item_id == RankingItem.id, Assignment.annotator_id == user.id)
    return select(RankingItem).where(never_assigned, _taken_slots(now) < RankingItem.required_annotations)


def _display_order(seed: int, user: User, item: RankingItem) -> list[int]:
    order = [int(i) for i in item.completion_ids]
    digest = hashlib.sha256(f"{seed}:{user.id}:{item.id}".encode()).digest()
    random.Random(digest).shuffle(order)
    return order


def _item_view(session: Session, assignment: Assignment, ranking: Ranking | None = None) -> ItemView:
    item = session.get(RankingItem, assignment.item_id)
    task = session.get(Task, item.task_id)
    view = ItemView(
        assignment_id=assignment.id,
        item_id=item.id,
        task_name=task.task_id,
        prompt=task.prompt,
        completions=load_completion_views(session, list(assignment.display_order)),
    )
    if ranking is not None:
        rank_of = {e.completion_id: e.rank for e in ranking.entries}
        view.ranks = [rank_of[c] for c in assignment.display_order] if rank_of else None
        view.comment = ranking.comment or ""
        view.flag_reason = ranking.flag_reason or ""
        view.editing = True
    return view


def claim_next(
    session: Session,
    user: User,
    *,
    claim_ttl_minutes: float,
    seed: int = 0,
    now: dt.datetime | None = None,
    among: Collection[int] | None = None,
) -> ItemView | None:
    """The user's live claim if they have one, else a newly claimed open item; None when nothing is left.

    ``among`` restricts new claims to those item ids (the simulated panel ranks a share and leaves the rest
    to people)."""
    now = now or utcnow()
    # A write first: on SQLite it takes the write lock, so choose-then-claim below cannot interleave.
    session.execute(
        update(Assignment)
        .where(Assignment.status == "claimed", Assignment.expires_at <= now)
        .values(status="expired")
    )
    live = session.scalar(
        select(Assignment).where(Assignment.annotator_id == user.id, _live_claim(now)).order_by(Assignment.id)
    )
    if live is not None:
        return _item_view(session, live)
    for _ in range(5):  # PostgreSQL: another claimer may fill the item between choose and lock
        query = _open_items_query(user, now)
        if among is not None:
            query = query.where(RankingItem.id.in_(list(among)))
        item = session.scalar(query.order_by(RankingItem.priority.desc(), RankingItem.id).limit(1))
        if item is None:
            return None
        session.scalar(select(RankingItem.id).where(RankingItem.id == item.id).with_for_update())
        if (
            session.scalar(select(_taken_slots(now)).where(RankingItem.id == item.id))
            >= item.required_annotations
        ):
            continue
        assignment = Assignment(
            item_id=item.id,
            annotator_id=user.id,
            status="claimed",
            display_order=_display_order(seed, user, item),
            claimed_at=now,
            expires_at=now + dt.timedelta(minutes=claim_ttl_minutes),
            created_by=user.actor,
        )
        session.add(assignment)
        session.flush()
        return _item_view(session, assignment)
    return None


def parse_id(value, what: str) -> int:
    """A row id sent by the client: a positive integer that fits the database's 64-bit column."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        number = 0
    if not 0 < number < 2**63:
        raise Rejected(f"{what} {value!r} is not a number")
    return number


def _own_assignment(session: Session, user: User, assignment_id) -> Assignment:
    aid = parse_id(assignment_id, "assignment id")
    assignment = session.get(Assignment, aid)
    if assignment is None or assignment.annotator_id != user.id:
        raise Rejected(f"assignment {aid} is not yours")
    return assignment


def _latest_ranking(session: Session, user: User) -> Ranking | None:
    return session.scalar(
        select(Ranking)
        .where(Ranking.annotator_id == user.id)
        .order_by(func.coalesce(Ranking.updated_at, Ranking.created_at).desc(), Ranking.id.desc())
        .limit(1)
    )


def _writable_ranking(session: Session, user: User, assignment: Assignment) -> Ranking | None:
    """The existing ranking to overwrite (an edit), None for a first answer; Rejected otherwise."""
    existing = session.scalar(
        select(Ranking).where(Ranking.item_id == assignment.item_id, Ranking.annotator_id == user.id)
    )
    if existing is None:
        if assignment.status not in ("claimed", "expired"):
            raise Rejected(f"assignment {assignment.id} is {assignment.status}; nothing to submit")
        return None
    latest = _latest_ranking(session, user)
    if latest is None or latest.id != existing.id:
        raise Rejected(
            f"assignment {assignment.id} was already answered; only the latest answer can be edited"
        )
    return existing


def _check_item(session: Session, assignment: Assignment) -> RankingItem:
    """The stored display order must still be exactly the item's completions, all of the item's task."""
    item = session.get(RankingItem, assignment.item_id)
    order = [int(c) for c in assignment.display_order]
    if sorted(order) != sorted(int(c) for c in item.completion_ids):
        raise Rejected(f"assignment {assignment.id}: completions do not match item {item.id}")
    tasks = set(session.scalars(select(Completion.task_id).where(Completion.id.in_(order))))
    if tasks != {item.task_id}:
        raise Rejected(f"item {item.id}: completions do not all belong to its task")
    return item


def normalise_ranks(ranks: list, k: int) -> list[int]:
    """Validate ranks given per display position; return dense ranks (1 = best, equal = tie).

    ``ranks`` has one entry per completion slot; slots beyond ``k`` must be empty. Each of the first ``k``
    must be an integer in 1..k (strings such as "2" are accepted). ``[1, 3, 3, 4]`` -> ``[1, 2, 2, 3]``.
    """
    if not isinstance(ranks, (list, tuple)):
        raise Rejected("ranking must be a list of ranks")
    extra = [r for r in ranks[k:] if r not in (None, "", [])]
    if extra:
        raise Rejected(f"ranking has values for {len(extra)} completion slot(s) this item does not have")
    if len(ranks) < k:
        raise Rejected(f"ranking has {len(ranks)} ranks for {k} completions")
    values = []
    for position, raw in enumerate(ranks[:k]):
        if raw in (None, ""):
            raise Rejected(f"completion {chr(65 + position)} has no rank")
        try:
            value = int(str(raw).strip()) if not isinstance(raw, bool) else None
        except ValueError:
            value = None
        if value is None or not 1 <= value <= k:
            raise Rejected(f"completion {chr(65 + position)}: rank {raw!r} is not a number from 1 to {k}")
        values.append(value)
    dense = {v: i + 1 for i, v in enumerate(sorted(set(values)))}
    return [dense[v] for v in values]


def _clean_text(value, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejected(f"{what} must be text")
    if "\x00" in value:
        raise Rejected(f"{what} contains a NUL character")
    if len(value) > limit:
        raise Rejected(f"{what} is {len(value)} characters; the limit is {limit}")
    return value.strip() or None


def _answer(
    session: Session,
    user: User,
    assignment_id,
    *,
    ranks: list | None,
    skip_reason: str | None,
    comment: str | None,
    flag_reason: str | None,
    now: dt.datetime | None,
) -> SubmitResult:
    now = now or utcnow()
    comment = _clean_text(comment, "comment", MAX_TEXT)
    flag_reason = _clean_text(flag_reason, "flag reason", MAX_REASON)
    assignment = _own_assignment(session, user, assignment_id)
    item = _check_item(session, assignment)
    existing = _writable_ranking(session, user, assignment)
    order = [int(c) for c in assignment.display_order]
    dense = normalise_ranks(ranks, len(order)) if ranks is not None else None
    ranking = existing or Ranking(
        item_id=item.id,
        annotator_id=user.id,
        assignment_id=assignment.id,
        display_order=order,
        time_spent_s=max(0.0, (now - assignment.claimed_at).total_seconds()),
        created_by=user.actor,
    )
    ranking.skipped = dense is None
    ranking.skip_reason = skip_reason
    ranking.flagged = flag_reason is not None
    ranking.flag_reason = flag_reason
    ranking.comment = comment
    if existing is not None:
        ranking.updated_at = now
        ranking.entries.clear()
        session.flush()  # delete old entries before the unique (ranking, completion) rows come back
    if dense is not None:
        ranking.entries.extend(RankingEntry(completion_id=c, rank=r) for c, r in zip(order, dense))
    assignment.status = "done" if dense is not None else "skipped"
    assignment.completed_at = now
    session.add(ranking)
    try:
        session.flush()
    except IntegrityError:
        raise Rejected(
            f"assignment {assignment.id} was answered twice at once; the first answer is kept"
        ) from None
    return SubmitResult(ranking_id=ranking.id, edited=existing is not None)


def submit_ranking(
    session: Session,
    user: User,
    assignment_id,
    ranks: list,
    *,
    comment: str | None = None,
    flag_reason: str | None = None,
    now: dt.datetime | None = None,
) -> SubmitResult:
    """Store (or, for the latest answer, overwrite) the user's ranking of an assignment's item."""
    return _answer(
        session,
        user,
        assignment_id,
        ranks=ranks,
        skip_reason=None,
        comment=comment,
        flag_reason=flag_reason,
        now=now,
    )


def skip_item(
    session: Session,
    user: User,
    assignment_id,
    reason: str,
    *,
    comment: str | None = None,
    flag_reason: str | None = None,
    now: dt.datetime | None = None,
) -> SubmitResult:
    """Record a skip with its reason; the item's slot goes back to other annotators."""
    reason = _clean_text(reason, "skip reason", MAX_REASON)
    if reason is None:
        raise Rejected("a skip needs a reason")
    return _answer(
        session,
        user,
        assignment_id,
        ranks=None,
        skip_reason=reason,
        comment=comment,
        flag_reason=flag_reason,
        now=now,
    )


def reopen_last(session: Session, user: User) -> ItemView | None:
    """The user's latest answered item with its answer pre-filled, for undo/edit; None if none yet."""
    ranking = _latest_ranking(session, user)
    if ranking is None:
        return None
    assignment = session.get(Assignment, ranking.assignment_id) if ranking.assignment_id else None
    if assignment is None:
        return None
    return _item_view(session, assignment, ranking)


def progress(
    session: Session, user: User, now: dt.datetime | None = None, *, count_open: bool = True
) -> Progress:
    """The user's answer counts; ``open_items`` (a scan over all items, the costly part) only if asked."""
    now = now or utcnow()
    counts = dict(
        session.execute(
            select(Ranking.skipped, func.count())
            .where(Ranking.annotator_id == user.id)
            .group_by(Ranking.skipped)
        ).all()
    )
    open_items = None
    if count_open:
        open_items = (
            session.scalar(select(func.count()).select_from(_open_items_query(user, now).subquery())) or 0
        )
    return Progress(done=counts.get(False, 0), skipped=counts.get(True, 0), open_items=open_items)
