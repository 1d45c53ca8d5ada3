"""SQLAlchemy 2.x typed ORM models: the one schema every part of codealign reads and writes.

Provenance rule: every row that a person or a run produces records who/what produced it (``created_by``:
``"annotator:<name>"``, ``"run:<id>"``, ``"cli:<user>@<host>"``, ``"import:<source>"``) and when
(``created_at``, UTC). Changing this file means adding an Alembic revision under ``db/migrations/versions``;
``tests/test_db.py`` fails when the models and the migrations disagree.

This module imports no torch.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false as sa_false


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[Any]: JSON}


class _Provenance:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), default="unknown", nullable=False)


# ---------------------------------------------------------------------------------------------- tasks
class Task(_Provenance, Base):
    """A programming task: the program is ``prompt + completion``; each entry of ``tests`` is run after it.

    ``tests`` is a list of self-contained Python snippets (``assert f(1) == 2``); partial credit is the share
    that pass. HumanEval keeps its ``check(candidate)`` function as one snippet ending in ``check(<entry>)``.
    """

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("source", "task_id", name="uq_tasks_source_task_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(String(200), nullable=False)  # e.g. "HumanEval/0", "basic/train/17"
    source: Mapped[str] = mapped_column(String(100), nullable=False, index=True)  # suite name
    split: Mapped[str] = mapped_column(String(50), nullable=False, default="test", index=True)
    prompt: Mapped[str] = mapped_column(Text, nullable=False)
    entry_point: Mapped[str] = mapped_column(String(200), nullable=False)
    tests: Mapped[list[Any]] = mapped_column(nullable=False)
    reference_solution: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)  # family, ops, difficulty...
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # re-import detects changed tasks

    completions: Mapped[list[Completion]] = relationship(back_populates="task", passive_deletes=True)


# ------------------------------------------------------------------------------------ policies & runs
class TrainingRun(_Provenance, Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[str] = mapped_column(String(50), nullable=False, index=True)  # sft|reward|dpo|grpo|ppo|...
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, default="running"
    )  # running|completed|failed
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)
    output_dir: Mapped[str | None] = mapped_column(Text)
    base_policy_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Policy(_Provenance, Base):
    """A checkpoint that can generate (or score): base model, SFT, DPO, GRPO, PPO, reward model."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    checkpoint_path: Mapped[str] = mapped_column(Text, nullable=False)
    stage: Mapped[str] = mapped_column(String(50), nullable=False)  # base|sft|dpo|grpo|ppo|reward|external
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id", ondelete="SET NULL"))
    training_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id", ondelete="SET NULL", use_alter=True, name="fk_policies_training_run")
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)

    parent: Mapped[Policy | None] = relationship(remote_side="Policy.id")


# ------------------------------------------------------------------------------ completions & scores
class Completion(_Provenance, Base):
    __tablename__ = "completions"
    __table_args__ = (
        UniqueConstraint(
            "task_id", "policy_id", "sampling_key", "sample_index", name="uq_completions_sample"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id", ondelete="SET NULL"), index=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    sampling_params: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)
    sampling_key: Mapped[str] = mapped_column(String(64), nullable=False, default="")  # hash of params
    sample_index: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    task: Mapped[Task] = relationship(back_populates="completions")
    policy: Mapped[Policy | None] = relationship()
    execution: Mapped[Execution | None] = relationship(
        back_populates="completion", uselist=False, passive_deletes=True
    )
    static_score: Mapped[StaticScore | None] = relationship(
        back_populates="completion", uselist=False, passive_deletes=True
    )


class Execution(_Provenance, Base):
    """Result of running ``prompt + completion`` against the task's tests in the sandbox."""

    __tablename__ = "executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    completion_id: Mapped[int] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    # passed|failed|runtime_error|syntax_error|timeout|memory_exceeded|sandbox_error
    verdict: Mapped[str] = mapped_column(String(30), nullable=False, index=True)
    tests_passed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tests_total: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error_type: Mapped[str | None] = mapped_column(String(200))
    error_line: Mapped[int | None] = mapped_column(Integer)
    output: Mapped[str] = mapped_column(Text, nullable=False, default="")  # truncated stdout/stderr
    isolation: Mapped[str] = mapped_column(String(30), nullable=False)  # full|partial|none

    completion: Mapped[Completion] = relationship(back_populates="execution")


class StaticScore(_Provenance, Base):
    __tablename__ = "static_scores"

    id: Mapped[int] = mapped_column(primary_key=True)
    completion_id: Mapped[int] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=False, unique=True
    )
    syntax_ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)  # normalised 0..1 per signal
    findings: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)  # raw ruff/radon/bandit

    completion: Mapped[Completion] = relationship(back_populates="static_score")


# ---------------------------------------------------------------------------------- people & rankings
class Annotator(_Provenance, Base):
    __tablename__ = "annotators"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(300), nullable=False)
    role: Mapped[str] = mapped_column(
        String(20), nullable=False, default="annotator"
    )  # annotator|reviewer|admin
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    # A simulated panel member (annotation_ui.panel): ranks through the same service as people, and every
    # export and metric can tell the two apart.
    simulated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=sa_false())


class RankingItem(_Provenance, Base):
    """One thing to rank: a task and the K completions shown together."""

    __tablename__ = "ranking_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False, index=True
    )
    completion_ids: Mapped[list[Any]] = mapped_column(nullable=False)
    required_annotations: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    priority: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)  # from the selection policy
    execution_tie: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Assignment(_Provenance, Base):
    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_assignments_item_annotator"),
        Index("ix_assignments_status_expires", "status", "expires_at"),
        Index("ix_assignments_annotator_id", "annotator_id"),  # progress and "my open claim" lookups
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("ranking_items.id", ondelete="CASCADE"), nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, default="claimed"
    )  # claimed|done|skipped|expired
    display_order: Mapped[list[Any]] = mapped_column(nullable=False)  # completion ids as shown, left to right
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class Ranking(_Provenance, Base):
    """An annotator's judgment of one item: a ranking (ties allowed), or a skip, plus flag and comment."""

    __tablename__ = "rankings"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_rankings_item_annotator"),
        Index(
            "ix_rankings_annotator_id", "annotator_id"
        ),  # undo/edit and progress scan one person's rankings
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("ranking_items.id", ondelete="CASCADE"), nullable=False)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), nullable=False)
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id", ondelete="SET NULL"))
    skipped: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    display_order: Mapped[list[Any]] = mapped_column(nullable=False)
    time_spent_s: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # set by undo/edit

    entries: Mapped[list[RankingEntry]] = relationship(
        back_populates="ranking", cascade="all, delete-orphan", order_by="RankingEntry.rank"
    )


class RankingEntry(Base):
    """Rank of one completion within a ranking; 1 is best, equal ranks are ties."""

    __tablename__ = "ranking_entries"
    __table_args__ = (UniqueConstraint("ranking_id", "completion_id", name="uq_ranking_entries"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ranking_id: Mapped[int] = mapped_column(ForeignKey("rankings.id", ondelete="CASCADE"), nullable=False)
    completion_id: Mapped[int] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=False
    )
    rank: Mapped[int] = mapped_column(Integer, nullable=False)

    ranking: Mapped[Ranking] = relationship(back_populates="entries")


class ArenaVote(_Provenance, Base):
    """A reviewer's blind A/B vote. ``a``/``b`` are the policies as stored; ``left_is_a`` records the sides."""

    __tablename__ = "arena_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"), nullable=False)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False)
    policy_a_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"), nullable=False)
    policy_b_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"), nullable=False)
    completion_a_id: Mapped[int] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=False
    )
    completion_b_id: Mapped[int] = mapped_column(
        ForeignKey("completions.id", ondelete="CASCADE"), nullable=False
    )
    left_is_a: Mapped[bool] = mapped_column(Boolean, nullable=False)
    winner: Mapped[str | None] = mapped_column(String(20))  # a|b|tie|both_bad; None while pending
    voted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class EvalResult(_Provenance, Base):
    """pass@k of one policy on one dataset split (``codealign eval --policy``).

    A result's *setup* is dataset, split, ``n_samples``, ``num_tasks``, the sampling parameters and the k
    set; only results of one setup are comparable (the report never mixes them).
    """

    __tablename__ = "eval_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100), nullable=False)
    split: Mapped[str] = mapped_column(String(50), nullable=False)
    n_samples: Mapped[int] = mapped_column(Integer, nullable=False)
    sampling_params: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)
    pass_at_k: Mapped[dict[str, Any]] = mapped_column(default=dict, nullable=False)  # {"pass@1": 0.31, ...}
    samples_path: Mapped[str | None] = mapped_column(Text)
    num_tasks: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # task_id -> [n, c] (samples, correct): the report's bootstrap intervals resample tasks from these.
    # None in rows stored before revision 0003.
    per_task: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Secondary measurements of the samples (readability issue rates, lines, lint findings, ...); pass@k is
    # the primary one.
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# ------------------------------------------------------------------------------------------- serving
class ApiKey(_Provenance, Base):
    """A key of the serving API (``codealign keys``). Only the SHA-256 of the key is stored; ``prefix`` is
    its first characters, shown by ``keys list`` so a person can tell keys apart. A revoked key keeps its row
    (``revoked_at`` set) so its name is not reused by accident."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    prefix: Mapped[str] = mapped_column(String(20), nullable=False)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
