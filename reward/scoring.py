"""Score the completions in the DB that lack an ``Execution`` or ``StaticScore`` row (``codealign score``).

Resumable by construction: each batch is one transaction, and the selection is "completions without a
row", so a re-run continues where an interrupted one stopped. Sandbox errors are stored as such (verdict
``sandbox_error``); delete those rows to retry them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from codealign.tasks.chat import program, task_messages

DEGRADED_WARNING = (
    "WARNING: sandbox isolation is {level}, not full ({notes}). Generated code runs with weaker limits: "
    "it may reach the network or files this user can access. Run as root on Linux for full isolation."
)


@dataclass
class ScoreOptions:
    """What ``codealign score`` scores and how; its flags set these fields."""

    policy: str | None = None  # only completions of this policy (by name)
    source: str | None = None  # only tasks of this suite
    limit: int | None = None  # score at most this many completions
    workers: int | None = None  # sandbox workers (None: CPU count + 1)
    timeout_s: float = 5.0  # seconds per program
    memory_mb: int = 512  # memory cap per program
    batch_size: int = 256  # completions per commit
    progress: bool = True

    def __post_init__(self) -> None:
        from codealign.errors import UserError

        for name in ("limit", "workers", "batch_size", "memory_mb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.timeout_s <= 0:
            raise UserError(f"--timeout must be positive, got {self.timeout_s}")


@dataclass
class ScoreSummary:
    executed: int = 0
    analyzed: int = 0
    verdicts: Counter = field(default_factory=Counter)
    isolation: str = "full"

    def line(self) -> str:
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none"
        return (
            f"scored {self.executed} executions and {self.analyzed} static analyses "
            f"(isolation {self.isolation}); verdicts: {verdicts}"
        )


def _pending_ids(session, opts: ScoreOptions) -> list[int]:
    from sqlalchemy import or_, select

    from db.models import Completion, Execution, Policy, StaticScore, Task

    query = (
        select(Completion.id)
        .join(Task, Completion.task_id == Task.id)
        .outerjoin(Execution, Execution.completion_id == Completion.id)
        .outerjoin(StaticScore, StaticScore.completion_id == Completion.id)
        .where(or_(Execution.id.is_(None), StaticScore.id.is_(None)))
        .order_by(Completion.id)
    )
    if opts.policy:
        policy_id = session.scalar(select(Policy.id).where(Policy.name == opts.policy))
        if policy_id is None:
            from codealign.errors import UserError

            raise UserError(f"--policy: no policy named {opts.policy!r} in the database")
        query = query.where(Completion.policy_id == policy_id)
    if opts.source:
        query = query.where(Task.source == opts.source)
    if opts.limit:
        query = query.limit(opts.limit)
    return list(session.scalars(query))


def score_missing(
    opts: ScoreOptions, created_by: str, warn: Callable[[str], None] = print, *, db
) -> ScoreSummary:
    from reward.pool import get_pool

    with db.session() as session:
        pending = _pending_ids(session, opts)
    summary = ScoreSummary()
    if not pending:
        return summary
    pool = get_pool(opts.workers)
    summary.isolation = pool.isolation
    if pool.isolation != "full":
        warn(DEGRADED_WARNING.format(level=pool.isolation.upper(), notes="; ".join(pool.notes) or "unknown"))
    bar = _progress(len(pending), opts.progress)
    try:
        for start in range(0, len(pending), opts.batch_size):
            _score_batch(pending[start : start + opts.batch_size], opts, created_by, summary, bar, db)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="completion", desc="scoring")


def _score_batch(ids: list[int], opts: ScoreOptions, created_by: str, summary: ScoreSummary, bar, db) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from db.models import Completion, Execution, StaticScore
    from reward.pool import get_pool
    from reward.static import analyze_batch

    with db.session() as session:
        rows = session.scalars(
            select(Completion)
            .where(Completion.id.in_(ids))
            .options(
                selectinload(Completion.task),
                selectinload(Completion.execution),
                selectinload(Completion.static_score),
            )
        ).all()
        to_run = [c for c in rows if c.execution is None]
        to_analyze = [c for c in rows if c.static_score is None]
        results = get_pool(opts.workers).run_batch(
            [_request(c) for c in to_run],
            timeout_s=opts.timeout_s,
            memory_mb=opts.memory_mb,
            on_result=(lambda i, r: bar.update(1)) if bar is not None else None,
        )
        for completion, result in zip(to_run, results):
            session.add(Execution(completion_id=completion.id, created_by=created_by, **result.db_fields()))
            summary.verdicts[result.verdict] += 1
        statics = analyze_batch(
            [_program(c) for c in to_analyze],
            score_from_line=[1 if _chat(c) else c.task.prompt.count("\n") + 1 for c in to_analyze],
            readability=True,
        )
        for completion, static in zip(to_analyze, statics):
            findings = dict(static.findings, syntax_error=static.syntax_error)
            session.add(
                StaticScore(
                    completion_id=completion.id,
                    created_by=created_by,
                    syntax_ok=static.syntax_ok,
                    scores=static.scores,
                    findings=findings,
                )
            )
        if bar is not None:
            bar.update(len(rows) - len(to_run))
    summary.executed += len(to_run)
    summary.analyzed += len(to_analyze)


def _chat(completion) -> bool:
    return task_messages(completion.task.meta) is not None


def _program(completion) -> str:
    """``prompt + completion``, or the code of a chat task's answer (:func:`codealign.tasks.chat.program`)."""
    return program(completion.task.prompt, completion.text, _chat(completion))


def _request(completion) -> tuple:
    """A sandbox request; a completion task's prompt travels along (the tests use its helpers)."""
    if _chat(completion):
        return (_program(completion), _tests_of(completion.task))
    return (_program(completion), _tests_of(completion.task), completion.task.prompt)


def _tests_of(task) -> list[str]:
    """A task's test snippets (a bare string, as a hand-edited row might hold, is one snippet)."""
    return [task.tests] if isinstance(task.tests, str) else list(task.tests)
