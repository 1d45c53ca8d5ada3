"""The quickstart's plumbing: the stage runner that makes a rerun resume, and each stage's config."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignment.quickstart.config import STAGE_YAML, QuickstartConfig
from codealign.config import load_config, merge_dicts
from codealign.errors import UserError


@dataclass
class StageRecord:
    name: str
    seconds: float
    output: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    reused: bool = False


class Stages:
    """Runs each named step once per output directory; a finished step is reused from its record."""

    def __init__(self, output_dir: Path):
        self.dir = output_dir / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records: list[StageRecord] = []

    def run(self, name: str, fn: Callable[[], tuple[str | None, dict[str, Any]]]) -> StageRecord:
        path = self.dir / f"{name}.json"
        if path.is_file():
            record = StageRecord(**{**json.loads(path.read_text()), "reused": True})
        else:
            print(f"[quickstart] {name} ...", flush=True)
            started = time.monotonic()
            output, info = fn()
            record = StageRecord(name, round(time.monotonic() - started, 1), output, info)
            path.write_text(json.dumps(record.__dict__, indent=2, default=str) + "\n")
            print(f"[quickstart] {name} done in {record.seconds:.1f} s", flush=True)
        self.records.append(record)
        return record


def stage_config(stage: str, base_yaml: str, overrides: dict[str, Any]):
    from alignment.stages import stage_config_class

    return load_config(stage_config_class(stage), f"configs/{base_yaml}", overrides)


def check_stage_sections(cfg: QuickstartConfig) -> None:
    """Load every selected stage's config before anything runs, so a typo fails in seconds, not minutes."""
    for name in cfg.stages:
        stage, yaml_name = STAGE_YAML[name]
        try:
            stage_config(
                stage,
                yaml_name,
                merge_dicts({"model_name_or_path": "-", "output_dir": "-"}, getattr(cfg, name)),
            )
        except UserError as exc:
            raise UserError(f"quickstart section '{name}': {exc}") from None
    from annotation_ui.panel import PanelConfig

    try:
        load_config(PanelConfig, "configs/panel.yaml", cfg.panel)
    except UserError as exc:
        raise UserError(f"quickstart section 'panel': {exc}") from None


def train(stage: str, cfg, db) -> tuple[str, dict[str, Any]]:
    from alignment.stages import train_stage

    outcome = train_stage(stage, cfg, db)
    metrics = {k: v for k, v in outcome.metrics.items() if k != "log_history"}
    batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    return outcome.output_dir, {
        "policy": outcome.policy_name,
        "run_id": outcome.run_id,
        "mlflow_run_id": outcome.mlflow_run_id,
        "mlflow_uri": outcome.mlflow_uri,  # a stage section may send its run to another store
        "metrics": metrics,
        "batch_size": batch,
        "learning_rate": cfg.learning_rate,
    }


def common(cfg: QuickstartConfig, out: Path, name: str, parent: str) -> dict[str, Any]:
    return {
        "model_name_or_path": parent,
        "output_dir": str(out / name),
        "policy_name": f"{out.name}-{name}",
        "seed": cfg.seed,
        "report_to": cfg.report_to,
        "mlflow": {
            "tracking_uri": str(mlflow_dir(out)),
            "experiment_name": out.name,
            "parent_run_id": parent_run_id(out),
        },
    }


def parent_run_id(out: Path) -> str | None:
    """The quickstart's own MLflow run, from the record of its ``tracking`` step (see :func:`start_tracking`)."""
    return _tracking_record(out).get("mlflow_run_id")


def _tracking_record(out: Path) -> dict[str, Any]:
    path = out / "stages" / "tracking.json"
    return json.loads(path.read_text())["info"] if path.is_file() else {}


def mlflow_dir(out: Path) -> Path:
    """The quickstart's MLflow store: every stage's run and the quickstart's own (``mlflow ui`` opens it)."""
    return out / "mlruns"


def start_tracking(cfg: QuickstartConfig, out: Path) -> tuple[None, dict[str, Any]]:
    """The quickstart's own MLflow run, parent of every stage's (a rerun continues it: the stage record)."""
    from alignment import tracking
    from codealign.config import to_dict

    tracker = tracking.start_run(
        tracking.MlflowSettings(tracking_uri=str(mlflow_dir(out)), experiment_name=out.name),
        out,
        run_name=out.name,
        tags={"codealign.stage": "quickstart", "codealign.output_dir": str(out)},
    )
    tracker.log_params(to_dict(cfg))
    return None, {"mlflow_run_id": tracker.run_id, "mlflow_uri": tracker.uri}


def _parent_tracker(out: Path):
    record = _tracking_record(out)
    if not record:
        return None
    from alignment import tracking

    return tracking.open_run(record["mlflow_uri"], record["mlflow_run_id"])


def set_tracking_status(out: Path, status: str) -> None:
    tracker = _parent_tracker(out)
    if tracker is not None:
        tracker.client.update_run(tracker.run_id, status=status)


def finish_tracking(out: Path, summary: dict[str, Any], status: str = "FINISHED") -> None:
    """The quickstart's own run: each row's numbers (``<policy>/pass_at_1`` ...), quickstart.json, the table
    and the report as files, then its final status."""
    tracker = _parent_tracker(out)
    if tracker is None:
        return
    for row in summary.get("rows", []):
        tracker.log_metrics({k: v for k, v in row.items() if k != "policy"}, prefix=f"{row['policy']}/")
    for name in ("quickstart.json", "table.md", "report"):
        tracker.log_artifact(out / name, "report" if name == "report" else None)
    tracker.finish(status)


def track_eval(record: StageRecord, eval_record: StageRecord, win: dict | None = None) -> None:
    """The held-out eval of a trained policy (or its win rate), as ``eval/...`` metrics and files of its
    stage's MLflow run; a step reused from an earlier run was logged then."""
    run_id = record.info.get("mlflow_run_id")
    if not run_id or eval_record.reused:
        return
    from alignment import tracking

    uri = record.info["mlflow_uri"]
    if win is not None:
        tracking.log_eval(
            uri, run_id, {"readability_win_rate": win["rate"], "readability_win_low": win["low"]}
        )
        return
    info = eval_record.info
    tracking.log_eval(uri, run_id, {**info["pass_at_k"], **info.get("metrics", {})}, eval_record.output)


def sample_task_ids(cfg: QuickstartConfig) -> list[str]:
    """A seeded random ``sample_prompts`` of the split: the pool's ids are not ordered by kind of prompt,
    but its later ids are the held-out-like ones (codealign.tasks.basic), so "the first N" would miss them."""
    import random

    from codealign.tasks.basic import generate_suite

    ids = [t.task_id for t in generate_suite(cfg.suite_seed) if t.split == cfg.sample_split]
    return sorted(random.Random(cfg.seed).sample(ids, min(cfg.sample_prompts, len(ids))))


def human_pairs(cfg: QuickstartConfig, sft_policy: str, **extra) -> dict[str, Any]:
    """The ``pairs`` section of the panel's rankings of the SFT samples (consensus: majority)."""
    return {"pairs": {"source": "human", "policies": [sft_policy], "splits": [cfg.sample_split], **extra}}


def reward_model_config(cfg: QuickstartConfig, out: Path, sft: StageRecord):
    """The reward model on the panel's consensus pairs, margin = rank gap, tasks held out for its accuracy."""
    overrides = merge_dicts(
        common(cfg, out, "reward_model", sft.output), human_pairs(cfg, sft.info["policy"])
    )
    return stage_config("reward_model", "reward_model.yaml", merge_dicts(overrides, cfg.reward_model))


def dpo_config(cfg: QuickstartConfig, out: Path, sft: StageRecord):
    """DPO on human pairs among same-verdict samples and execution pairs across verdicts: execution decides
    correctness, the rankings decide the rest."""
    pairs = human_pairs(cfg, sft.info["policy"], human_within_verdict=True)
    pairs["pairs"]["source"] = "mixed"
    return stage_config("dpo", "dpo.yaml", merge_dicts(common(cfg, out, "dpo", sft.output), pairs, cfg.dpo))


def grpo_config(
    cfg: QuickstartConfig, out: Path, sft: StageRecord, name: str, reward_model: StageRecord | None
):
    """GRPO from SFT: ``grpo`` with the RLHF reward (execution + the reward model, gated), ``grpo_exec`` with the
    shipped execution reward alone."""
    overrides = common(cfg, out, name, sft.output)
    if name == "grpo":
        overrides |= {
            "reward_funcs": ["combined"],
            "reward_weights": None,
            "reward_config": cfg.rlhf_reward_config,
            "reward_model_path": reward_model.output,
        }
    return stage_config("grpo", "grpo.yaml", merge_dicts(overrides, getattr(cfg, name)))


def ppo_config(cfg: QuickstartConfig, out: Path, sft: StageRecord, trained: dict, reward_model: StageRecord):
    """PPO with the RLHF reward and as many sampled completions as GRPO (the report compares the two at equal
    sample budget); an explicit ``ppo.max_steps`` wins."""
    overrides = common(cfg, out, "ppo", sft.output) | {
        "reward_funcs": ["combined"],
        "reward_weights": None,
        "reward_config": cfg.rlhf_reward_config,
        "reward_model_path": reward_model.output,
    }
    ppo_cfg = stage_config("ppo", "ppo.yaml", merge_dicts(overrides, cfg.ppo))
    grpo = trained.get("grpo") or trained.get("grpo_exec")
    budget = grpo.info["metrics"].get("num_completions") if grpo is not None else None
    if budget and "max_steps" not in cfg.ppo:
        ppo_cfg.max_steps = max(1, -(-int(budget) // ppo_cfg.rollout_batch_size))
    return ppo_cfg


def control_config(cfg: QuickstartConfig, out: Path, sft: StageRecord, trained: dict):
    """SFT continued on reference solutions with DPO's step count, batch size and learning rate: a gain that
    does not beat this is not an alignment gain (docs/pipeline.md). SFT's own lr (1e-3) at a constant rate
    wrecked the converged policy (measured -11.6 pts), which says nothing about what extra training is worth."""
    matched: dict[str, Any] = {}
    dpo = trained.get("dpo")
    if dpo is not None:
        metrics = dpo.info["metrics"]
        matched = {
            "max_steps": int(metrics.get("global_step") or 1),
            "per_device_train_batch_size": int(dpo.info.get("batch_size") or 32),
        }
        if "learning_rate" in dpo.info:
            matched["learning_rate"] = dpo.info["learning_rate"]
    base = {**common(cfg, out, "control", sft.output), "policy_stage": "control"}
    return stage_config(
        "sft", "sft.yaml", merge_dicts(base, {"lr_scheduler_type": "constant"}, matched, cfg.control)
    )


def policy_config(
    name: str, cfg: QuickstartConfig, out: Path, trained: dict, reward_model: StageRecord | None
):
    """(recipe stage, its config) of one of the policies trained from SFT."""
    sft = trained["sft"]
    if name == "dpo":
        return "dpo", dpo_config(cfg, out, sft)
    if name in ("grpo", "grpo_exec"):
        return "grpo", grpo_config(cfg, out, sft, name, reward_model)
    if name == "ppo":
        return "ppo", ppo_config(cfg, out, sft, trained, reward_model)
    return "sft", control_config(cfg, out, sft, trained)
