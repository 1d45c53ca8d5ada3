"""The run registry: every training run is a ``TrainingRun`` row, every result a ``Policy`` with its parent.

A stage wraps its work in :func:`registered_run`::

    with registered_run("dpo", cfg, db) as run:   # reads output_dir, model_name_or_path, policy_name, resume
        trainer.train(resume_from_checkpoint=run.resume_from)
        ...
        outcome = run.complete(metrics)

Guarantees:

* the ``TrainingRun`` row exists (status ``running``) before any weights move, and ends ``completed`` with
  its metrics or ``failed`` with the one-line error; an exception is re-raised after it is recorded;
* the checkpoint becomes a ``Policy`` whose parent is the policy registered for ``model_name_or_path``
  (looked up by checkpoint path; an unknown directory is registered once as stage ``external``), so the
  lineage base -> sft -> dpo/grpo is queryable;
* a policy name that already points at a *different* checkpoint is refused before training starts;
* resume: when ``output_dir`` holds ``checkpoint-*`` directories from an earlier, unfinished run of the same
  stage, ``run.resume_from`` is the last one and the earlier ``TrainingRun`` row is reused (its metrics gain
  ``resumed_from``);
* under ``accelerate launch`` only the main process (global rank 0) writes rows; other ranks get a handle
  with ``run_id=None`` and return an outcome without ids.

Non-guarantees: a process killed with SIGKILL leaves its row ``running`` (the next run in the same
``output_dir`` resumes and reuses it); nothing here stops two concurrent runs from sharing an ``output_dir``.

No torch at import time (``transformers`` is imported lazily for checkpoint detection only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment import tracking
from codealign.config import to_dict
from codealign.errors import UserError
from codealign.provenance import run_actor

_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainOutcome:
    """What every stage's ``train(cfg)`` returns (ids are ``None`` on non-main ranks)."""

    stage: str
    output_dir: str
    metrics: dict[str, Any]
    run_id: int | None = None
    policy_id: int | None = None
    policy_name: str | None = None
    resumed_from: str | None = None
    mlflow_run_id: str | None = None  # the stage's MLflow run (report_to: [mlflow]); its store is mlflow_uri
    mlflow_uri: str | None = None


def is_main_process() -> bool:
    """Global rank 0, read from the launcher's environment (no process group needed)."""
    return int(os.environ.get("RANK", "0")) == 0


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The ``checkpoint-N`` directory with the largest N that holds trainer state, or None."""
    path = Path(output_dir)
    if not path.is_dir():
        return None
    steps = []
    for child in path.iterdir():
        match = _CHECKPOINT_DIR.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            steps.append((int(match.group(1)), child))
    return str(max(steps)[1]) if steps else None


def policy_for_checkpoint(session, model_dir: str | Path, created_by: str | None = None):
    """The ``Policy`` row of a model directory; an unknown one is registered once, as stage ``external``.

    An external policy is named by its path (relative to the working directory when inside it, e.g.
    ``runs/quickstart/dpo``), never by its last component alone: ``dpo`` would take the name the next
    ``train dpo`` into ``runs/dpo`` registers its own policy under.
    """
    from sqlalchemy import select

    from db.models import Policy

    path = Path(model_dir).resolve() if Path(model_dir).exists() else Path(model_dir)
    stored = str(path)
    policy = session.scalars(
        select(Policy).where(Policy.checkpoint_path == stored).order_by(Policy.id)
    ).first()
    if policy is not None:
        return policy
    try:
        name = str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        name = stored
    if session.scalars(select(Policy).where(Policy.name == name[-200:])).first() is not None:
        name = stored
    policy = Policy(
        name=name[-200:],
        checkpoint_path=stored,
        stage="external",
        created_by=created_by or "import:" + stored[-190:],
    )
    session.add(policy)
    session.flush()
    return policy


def parent_policy_id(session, model_name_or_path: str) -> int:
    """The policy of the starting checkpoint (see :func:`policy_for_checkpoint`)."""
    return policy_for_checkpoint(session, model_name_or_path).id


def _check_policy_name(session, name: str, checkpoint_path: str) -> None:
    from sqlalchemy import select

    from db.models import Policy

    other = session.scalars(select(Policy).where(Policy.name == name)).first()
    if other is not None and other.checkpoint_path != checkpoint_path:
        raise UserError(
            f"policy_name '{name}' is already used by checkpoint {other.checkpoint_path}; "
            "set another policy_name or reuse that output_dir"
        )


@dataclass
class RunHandle:
    """A started run. ``resume_from`` is the checkpoint the trainer should resume, or None."""

    stage: str
    output_dir: str
    policy_name: str
    config: dict[str, Any]
    run_id: int | None = None
    parent_policy_id: int | None = None
    resume_from: str | None = None
    db: Any = None  # the Database rows go to
    policy_stage: str | None = None  # the config's override of the stage recorded for the policy
    tracker: Any = None  # the stage's MLflow run (alignment.tracking.Tracker) when report_to lists mlflow
    outcome: TrainOutcome | None = field(default=None, repr=False)

    def callbacks(self) -> list:
        """The trainer callbacks of this run: its MLflow logger when report_to lists mlflow."""
        return tracking.trainer_callbacks(self.tracker)

    def complete(self, metrics: dict[str, Any]) -> TrainOutcome:
        """Mark the run completed and register ``output_dir`` as a policy of stage ``policy_stage`` (the
        config's, default the run's stage) — main process only."""
        policy_id = None
        if self.run_id is not None:
            policy_id = _finish(self, metrics, self.policy_stage or self.stage)
        self.outcome = TrainOutcome(
            stage=self.stage,
            output_dir=self.output_dir,
            metrics=metrics,
            run_id=self.run_id,
            policy_id=policy_id,
            policy_name=self.policy_name if self.run_id is not None else None,
            resumed_from=self.resume_from,
            mlflow_run_id=self.tracker.run_id if self.tracker is not None else None,
            mlflow_uri=self.tracker.uri if self.tracker is not None else None,
        )
        if self.tracker is not None:
            final = {k: v for k, v in metrics.items() if k != "log_history"}
            self.tracker.log_final(final, step=int(metrics.get("global_step") or 0))
            self.tracker.finish("FINISHED")
        return self.outcome


def start_run(stage: str, cfg: Any, db) -> RunHandle:
    """Create (or, when resuming, reuse) the ``TrainingRun`` row; see the module docstring for guarantees.

    ``cfg`` is a stage config: ``output_dir``, ``model_name_or_path``, ``policy_name`` and ``resume`` are read.
    """
    from sqlalchemy import select

    from db.models import TrainingRun

    output_dir = str(Path(cfg.output_dir).resolve())
    name = cfg.policy_name or Path(output_dir).name
    handle = RunHandle(
        stage=stage,
        output_dir=output_dir,
        policy_name=name,
        config=to_dict(cfg),
        resume_from=last_checkpoint(output_dir) if cfg.resume else None,
        db=db,
        policy_stage=getattr(cfg, "policy_stage", None),
    )
    if not is_main_process():
        return handle
    with db.session() as session:
        _check_policy_name(session, name, output_dir)
        handle.parent_policy_id = parent_policy_id(session, cfg.model_name_or_path)
        run = None
        if handle.resume_from:
            run = session.scalars(
                select(TrainingRun)
                .where(
                    TrainingRun.stage == stage,
                    TrainingRun.output_dir == output_dir,
                    TrainingRun.status != "completed",
                )
                .order_by(TrainingRun.id.desc())
            ).first()
        if run is None:
            run = TrainingRun(stage=stage, output_dir=output_dir, created_by="pending")
            session.add(run)
            session.flush()
            run.created_by = run_actor(run.id)
        run.config = handle.config
        run.status = "running"
        run.error = None
        run.base_policy_id = handle.parent_policy_id
        run.metrics = {
            **(run.metrics or {}),
            **({"resumed_from": handle.resume_from} if handle.resume_from else {}),
        }
        if tracking.wants_mlflow(getattr(cfg, "report_to", [])):
            handle.tracker = _start_tracking(handle, cfg, stage, run)
        handle.run_id = run.id
    return handle


def _start_tracking(handle: RunHandle, cfg: Any, stage: str, run) -> tracking.Tracker:
    """The stage's MLflow run (the row's earlier one when resuming), its id kept in the row's metrics."""
    tracker = tracking.start_run(
        cfg.mlflow,
        handle.output_dir,
        run_name=handle.policy_name,
        tags={
            "codealign.stage": handle.policy_stage or stage,
            "codealign.training_run_id": str(run.id),
            "codealign.policy": handle.policy_name,
            "codealign.output_dir": handle.output_dir,
            "codealign.model_name_or_path": str(cfg.model_name_or_path),
        },
        resume_run_id=(run.metrics or {}).get("mlflow_run_id") if handle.resume_from else None,
    )
    tracker.log_params(handle.config)
    run.metrics = {**run.metrics, "mlflow_run_id": tracker.run_id, "mlflow_tracking_uri": tracker.uri}
    return tracker


def _finish(handle: RunHandle, metrics: dict[str, Any], policy_stage: str) -> int:
    from sqlalchemy import select

    from db.models import Policy, TrainingRun, utcnow

    with handle.db.session() as session:
        run = session.get(TrainingRun, handle.run_id)
        run.status = "completed"
        run.metrics = {**(run.metrics or {}), **metrics}
        run.finished_at = utcnow()
        policy = session.scalars(select(Policy).where(Policy.name == handle.policy_name)).first()
        if policy is None:
            policy = Policy(name=handle.policy_name, checkpoint_path=handle.output_dir, stage=policy_stage)
            session.add(policy)
        policy.stage = policy_stage
        policy.parent_id = handle.parent_policy_id
        policy.training_run_id = run.id
        policy.config = handle.config
        policy.created_by = run_actor(run.id)
        session.flush()
        return policy.id


def fail_run(handle: RunHandle, error: BaseException) -> None:
    """Record the failure as one line (the traceback stays in the process's stderr)."""
    if handle.tracker is not None:
        handle.tracker.finish("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
    if handle.run_id is None:
        return
    from db.models import TrainingRun, utcnow

    with handle.db.session() as session:
        run = session.get(TrainingRun, handle.run_id)
        run.status = "failed"
        run.error = f"{type(error).__name__}: {error}"[:2000]
        run.finished_at = utcnow()


@contextmanager
def registered_run(stage: str, cfg: Any, db) -> Iterator[RunHandle]:
    """``start_run`` ... ``complete`` with failure recorded on any exception (including Ctrl-C)."""
    handle = start_run(stage, cfg, db)
    try:
        yield handle
    except BaseException as exc:
        fail_run(handle, exc)
        raise
    if handle.outcome is None:
        fail_run(handle, RuntimeError("stage returned without calling run.complete()"))
