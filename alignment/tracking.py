"""MLflow tracking (``report_to: [mlflow]``): one MLflow run per training stage, in a local store.

A stage with ``mlflow`` in ``report_to`` gets an MLflow run when its ``TrainingRun`` row is created
(:func:`alignment.runs.registered_run`): the stage's config as params, every metric the trainer logs under the
name TRL logs it (``loss``, ``rewards/accuracies``, PPO's ``objective/kl`` ...) at its step, the final
metrics at the end, and status FINISHED, FAILED or KILLED as the row's. ``mlflow.tracking_uri`` defaults
to ``mlruns`` beside ``output_dir`` (the quickstart's stages under ``runs/quickstart/`` share
``runs/quickstart/mlruns``); a directory is a SQLite store (:func:`local_store`), so
``mlflow ui --backend-store-uri sqlite:///runs/quickstart/mlruns/mlflow.db`` opens it, no server needed.
``mlflow.parent_run_id`` nests the run under another (the quickstart's own run).

Why not transformers' ``MLflowCallback``: it is configured through environment variables only
(``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``MLFLOW_NESTED_RUN``) and logs through mlflow's process-global
active run; here the store, the run and its parent are passed explicitly (an ``MlflowClient`` bound to one
URI, one run id), so the DB row, the eval and the quickstart can find the same run again. ``report_to`` keeps
``mlflow`` away from TRL for that reason; other targets (``tensorboard``) still pass through.

Guarantees: only the main process logs; a resumed stage continues the MLflow run its row recorded
(``mlflow_run_id`` in the row's metrics); a metric that is not a finite number is skipped, never an error.
Non-guarantees: a process killed with SIGKILL leaves its MLflow run RUNNING (as it leaves the row); MLflow's
own name rules apply, so ``pass@1`` is logged as ``pass_at_1``.

No torch here; ``mlflow`` and ``transformers`` are imported lazily.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codealign.errors import UserError

# MLflow accepts alphanumerics, _ - . space : / in names; anything else (``@``, ``=``) becomes _.
_BAD_NAME = re.compile(r"[^A-Za-z0-9_\-. :/]")
_BATCH = 100  # MLflow's limit of params (and metrics: 1000) per log_batch call


@dataclass
class MlflowSettings:
    """Where the MLflow run goes. Used only when ``report_to`` lists ``mlflow``."""

    tracking_uri: str | None = None  # a directory or a URI; default: mlruns beside output_dir
    experiment_name: str = "codealign"
    parent_run_id: str | None = None  # nest under this run (the quickstart sets its own)


def wants_mlflow(report_to: list[str]) -> bool:
    return "mlflow" in report_to


def trainer_report_to(report_to: list[str]) -> list[str]:
    """What the TRL / accelerate trackers get: everything but mlflow (ours, see the module docstring)."""
    rest = [t for t in report_to if t not in ("mlflow", "none")]
    return rest or ["none"]


def check_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise UserError("report_to: mlflow is not installed (pip install mlflow), or use tensorboard")


def store_uri(settings: MlflowSettings, output_dir: str | Path) -> str:
    """The tracking URI: ``settings.tracking_uri`` when it is a URI, else the local store in that directory
    (default: ``mlruns`` beside ``output_dir``)."""
    uri = settings.tracking_uri or str(Path(output_dir).resolve().parent / "mlruns")
    return uri if "://" in uri else local_store(uri)


def local_store(directory: str | Path) -> str:
    """A local store in ``directory``: ``mlflow.db`` (SQLite) with the files under ``artifacts/``.

    SQLite, not MLflow's plain-file ``mlruns`` layout: MLflow 3 refuses to open a file store unless an
    environment variable opts in (measured with mlflow 3.17), and a SQLite file needs no server either.
    """
    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Files beside a local SQLite store (``<dir>/artifacts``); MLflow's default would be ``./mlruns`` of
    whatever directory the process runs in."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).parent / "artifacts").as_uri()


def metric_name(name: str) -> str:
    return _BAD_NAME.sub("_", name.replace("@", "_at_"))


def numeric_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``metrics``, one level of nesting flattened with ``/`` (``pass_at_k/1``)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out |= numeric_metrics(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[metric_name(f"{prefix}{key}")] = float(value)
    return out


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params: ``lora.r`` -> ``16``; lists as JSON."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out |= flat_params(value, f"{prefix}{key}.")
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[metric_name(f"{prefix}{key}")] = text[:6000]
    return out


class Tracker:
    """One MLflow run in one store (an ``MlflowClient`` bound to its URI): log, attach files, finish."""

    def __init__(self, client, run_id: str):
        self.client = client
        self.run_id = run_id

    @property
    def uri(self) -> str:
        return self.client.tracking_uri

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, v, now, step or 0) for k, v in numeric_metrics(metrics, prefix).items()]
        for i in range(0, len(rows), _BATCH):
            self.client.log_batch(self.run_id, metrics=rows[i : i + _BATCH])

    def log_final(self, metrics: dict[str, Any], step: int) -> None:
        """The stage's final numbers at its last step, except those the trainer already logged as they are."""
        logged = self.client.get_run(self.run_id).data.metrics
        self.log_metrics({k: v for k, v in numeric_metrics(metrics).items() if logged.get(k) != v}, step)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        # a resumed run logs its config again; MLflow refuses to change a param, so only new keys go
        rows = [Param(k, v) for k, v in flat_params(params).items() if k not in existing]
        for i in range(0, len(rows), _BATCH):
            self.client.log_batch(self.run_id, params=rows[i : i + _BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


def client_for(uri: str):
    import warnings

    # A new store announces its table creation at INFO, and mlflow's SQLAlchemy mapping trips a deprecation
    # warning at import: neither is anything a codealign user acts on.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow\.")
    from mlflow.tracking import MlflowClient

    logger = logging.getLogger("mlflow")
    if logger.getEffectiveLevel() < logging.WARNING:  # after the import: mlflow sets INFO there
        logger.setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def errors_in_one_line():
    """MLflow logs a store error with its traceback at ERROR before it raises it; where the caller reports the
    error in one line of its own, that traceback is noise."""
    import mlflow  # noqa: F401 - its import sets its logger's level, which must come before ours

    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def start_run(
    settings: MlflowSettings,
    output_dir: str | Path,
    run_name: str,
    tags: dict[str, str],
    resume_run_id: str | None = None,
) -> Tracker:
    """A new MLflow run (or the one a resumed stage recorded) in the experiment of ``settings``; a store that
    cannot be opened is a one-line error naming ``mlflow.tracking_uri``."""
    uri = store_uri(settings, output_dir)
    try:
        with errors_in_one_line():
            return _start(client_for(uri), settings, run_name, tags, resume_run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the user needs the URI and the cause
        raise UserError(f"mlflow.tracking_uri: cannot log to {uri}: {first_line(exc)}") from None


def first_line(exc: Exception) -> str:
    """What an MLflow error says, on one line (its messages can run to a stack of SQL)."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _start(client, settings: MlflowSettings, run_name: str, tags: dict[str, str], resume_run_id: str | None):
    if resume_run_id:
        from mlflow.exceptions import MlflowException

        try:
            client.update_run(resume_run_id, status="RUNNING")
            return Tracker(client, resume_run_id)
        except MlflowException:  # the store was deleted or replaced: start a new run
            pass
    experiment = client.get_experiment_by_name(settings.experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(settings.experiment_name, _artifact_location(client.tracking_uri))
    )
    all_tags = dict(tags)
    if settings.parent_run_id:
        all_tags["mlflow.parentRunId"] = settings.parent_run_id
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    return Tracker(client, run.info.run_id)


def open_run(uri: str, run_id: str) -> Tracker:
    """An existing run (to add the eval's metrics and files after its stage finished)."""
    return Tracker(client_for(uri), run_id)


def log_eval(uri: str, run_id: str, eval_metrics: dict[str, Any], results: str | Path | None = None) -> None:
    """A held-out eval of a stage's policy as ``eval/...`` metrics (and its results file under ``eval/``) of the
    stage's own run, after it finished: the quickstart's evals and ``codealign eval --policy`` both land here."""
    tracker = open_run(uri, run_id)
    tracker.log_metrics(eval_metrics, prefix="eval/")
    if results:
        tracker.log_artifact(results, "eval")


def training_run_of(db, policy_id: int) -> tuple[str, str] | None:
    """(tracking URI, run id) of the MLflow run that trained ``policy_id``, or None (not tracked, or not ours)."""
    from db.models import Policy, TrainingRun

    with db.session() as session:
        policy = session.get(Policy, policy_id)
        run = session.get(TrainingRun, policy.training_run_id) if policy and policy.training_run_id else None
        metrics = dict(run.metrics or {}) if run else {}
    uri, run_id = metrics.get("mlflow_tracking_uri"), metrics.get("mlflow_run_id")
    return (uri, run_id) if uri and run_id else None


def trainer_callbacks(tracker: Tracker | None) -> list:
    """``[callback]`` forwarding every ``Trainer`` log (TRL's metric names) to ``tracker``; ``[]`` without one."""
    if tracker is None:
        return []
    from transformers import TrainerCallback

    class MlflowLogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                tracker.log_metrics(logs, step=state.global_step)

    return [MlflowLogCallback()]
