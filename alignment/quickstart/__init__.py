"""``codealign quickstart`` (``make quickstart``): the whole RLHF loop on the embedded model, CPU only.

Reads top to bottom (:func:`run_quickstart`): the ``basic`` suite with mixed-style references -> init the tiny
model -> SFT -> sample the SFT policy on the RL prompt pool and score the samples (execution + readability)
-> ranking items of those samples, ranked by the simulated panel (:mod:`annotation_ui.panel`; it leaves
``items_left_open`` items for people) -> a reward model on the panel's consensus pairs -> RLHF: GRPO with
execution + the reward model gated on passing tests, DPO on human pairs among same-verdict samples and
execution pairs across verdicts (and, when listed in ``stages``, GRPO on execution alone and PPO with the RLHF
reward) + a CONTROL: SFT trained further on references at DPO's steps, batch and lr -> evaluate every policy on
the held-out split (pass@k, readability issue rates, a fresh panel's blind win rate against SFT) -> one table,
``quickstart.json`` and the HTML report.

Examples::

    codealign quickstart                                   # configs/quickstart.yaml, runs/quickstart, ./codealign.db
    codealign quickstart --output /tmp/qs --fresh          # start over in another directory
    codealign quickstart grpo.max_steps=50 eval_n=4        # overrides (dotted for the stage sections)

Every stage writes ``<output>/stages/<name>.json`` when it finishes; a rerun reuses finished stages and resumes
the rest. ``--fresh`` deletes the output directory first. Seeds are fixed: a fresh rerun on the same machine
gives the same table. The stage sections override the shipped stage YAMLs field by field, with those stages'
own dataclasses checking every key.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignment.quickstart import steps
from alignment.quickstart.config import DEFAULT_CONFIG, POLICY_STAGES, QuickstartConfig
from alignment.quickstart.steps import StageRecord, check_stage_sections
from alignment.quickstart.table import format_table, result_rows
from alignment.tracking import wants_mlflow
from codealign.config import load_config

FEEDBACK_STAGES = {"reward_model", "dpo"}  # the stages that train on the SFT samples and their rankings

__all__ = ["DEFAULT_CONFIG", "QuickstartConfig", "QuickstartResult", "StageRecord", "check_stage_sections"]


@dataclass
class QuickstartResult:
    output_dir: Path
    stages: list[StageRecord]
    rows: list[dict[str, Any]]  # one per evaluated policy (see alignment.quickstart.table)
    table: str
    total_seconds: float
    summary: dict[str, Any]  # quickstart.json


def run_quickstart(cfg: QuickstartConfig, db, fresh: bool = False) -> QuickstartResult:
    """The whole loop (see the module docstring); on any failure the quickstart's MLflow run ends FAILED."""
    try:
        return _run_quickstart(cfg, db, fresh)
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        steps.finish_tracking(Path(cfg.output_dir).resolve(), {}, status)
        raise


def _run_quickstart(cfg: QuickstartConfig, db, fresh: bool) -> QuickstartResult:
    from alignment.comparison import blind_win_rate, fresh_panel
    from alignment.evaluation import EvalConfig, evaluate_policy
    from alignment.generation import SamplingParams
    from alignment.model_init import init_model
    from alignment.sample import sample_to_db
    from annotation_ui.panel import PanelConfig
    from codealign.provenance import cli_actor
    from codealign.tasks.basic import generate_suite
    from db.migrate import upgrade
    from db.tasks import import_tasks

    check_stage_sections(cfg)
    started = time.monotonic()
    out = Path(cfg.output_dir).resolve()
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    stages = steps.Stages(out)
    actor = cli_actor()
    suite = generate_suite(cfg.suite_seed, cfg.suite_styles)
    panel = load_config(PanelConfig, "configs/panel.yaml", {**cfg.panel, "seed": cfg.seed})

    # 1. database + the basic suite (idempotent)
    def setup():
        upgrade(db)
        with db.session() as session:
            result = import_tasks(session, suite, source="basic", created_by=actor)
        return None, {"tasks": result.total, "styles": cfg.suite_styles}

    stages.run("setup", setup)
    # the quickstart's own MLflow run, parent of every stage's; a rerun continues the run an earlier one began
    if wants_mlflow(cfg.report_to) and stages.run("tracking", lambda: steps.start_tracking(cfg, out)).reused:
        steps.set_tracking_status(out, "RUNNING")

    # 2. the embedded model, 3. SFT on the train split's (mixed-style) references
    base = stages.run(
        "base", lambda: (str(init_model(out / "base", cfg.model_preset, cfg.seed, overwrite=True)), {})
    )
    sft_cfg = steps.stage_config("sft", "sft.yaml", {**steps.common(cfg, out, "sft", base.output), **cfg.sft})
    sft = stages.run("sft", lambda: steps.train("sft", sft_cfg, db))
    sft_policy = sft.info["policy"]

    # 4. sample the SFT policy where it is weak, execute and statically score the samples
    def sample_and_score():
        from reward.scoring import ScoreOptions, score_missing

        params = SamplingParams(cfg.sample_temperature, 1.0, cfg.max_new_tokens, cfg.seed)
        sampled = sample_to_db(
            db,
            sft_policy,
            "basic",
            cfg.sample_split,
            cfg.sample_k,
            params,
            batch_size=cfg.batch_size,
            created_by=actor,
            task_ids=steps.sample_task_ids(cfg),
        )
        summary = score_missing(ScoreOptions(policy=sft_policy, source="basic"), actor, db=db)
        return None, {"completions": sampled.created + sampled.reused, "verdicts": dict(summary.verdicts)}

    # 5. human feedback: ranking items of those samples, the panel ranks all but a few left for people.
    # Only the reward model and DPO learn from samples and rankings: an SFT-only or execution-only run
    # (e.g. 'stages=[sft]' to study SFT) skips both steps.
    feedback = None
    if FEEDBACK_STAGES.intersection(cfg.stages):
        stages.run("sample_score", sample_and_score)
        feedback = stages.run("panel", lambda: _panel_feedback(cfg, db, panel, actor))

    # 6. the reward model, 7. the aligned policies and the control, all from SFT
    trained = {"sft": sft}
    reward_model = None
    if "reward_model" in cfg.stages:
        reward_model = stages.run(
            "reward_model", lambda: steps.train("reward_model", steps.reward_model_config(cfg, out, sft), db)
        )
    for name in (n for n in POLICY_STAGES if n in cfg.stages):
        trained[name] = stages.run(
            name, lambda n=name: steps.train(*steps.policy_config(n, cfg, out, trained, reward_model), db)
        )

    # 8. held-out evaluation of every policy (same sampling for all) and a fresh panel's blind win rate vs SFT
    eval_cfg = EvalConfig(
        dataset="basic",
        split=cfg.eval_split,
        n=cfg.eval_n,
        k=cfg.eval_ks,
        temperature=cfg.eval_temperature,
        top_p=1.0,
        max_new_tokens=cfg.max_new_tokens,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        limit=cfg.eval_limit,
        output_dir=str(out / "eval"),
    )
    prompts = {t.task_id: t.prompt for t in suite}
    evaluated: dict[str, StageRecord] = {}
    for name, record in trained.items():

        def evaluate(record=record):
            outcome = evaluate_policy(db, record.info["policy"], eval_cfg, actor)
            info = {"pass_at_k": outcome.pass_at_k, "tasks": outcome.num_tasks, "metrics": outcome.metrics}
            return str(outcome.results_path), info

        evaluated[name] = stages.run(f"eval_{name}", evaluate)
        steps.track_eval(record, evaluated[name])
    for name, record in evaluated.items():
        if name != "sft":

            def judge(record=record):
                win = blind_win_rate(record.output, evaluated["sft"].output, prompts, fresh_panel(panel))
                return None, win.__dict__

            judged = stages.run(f"winrate_{name}", judge)
            record.info["win"] = judged.info
            steps.track_eval(trained[name], judged, win=judged.info)

    # 9. the report, the table and quickstart.json
    if cfg.report:
        from alignment.report import write_report

        stages.run("report", lambda: (str(write_report(out / "report", db)), {}))
    total = time.monotonic() - started
    rows = result_rows(trained, evaluated)
    summary = {
        "rows": rows,
        "reward_model": _reward_model_summary(reward_model),
        "panel": feedback.info if feedback else None,
        "stages": [r.__dict__ for r in stages.records],
        "total_seconds": total,
        "setup": {
            "eval": f"basic/{cfg.eval_split}",
            "n": cfg.eval_n,
            "temperature": cfg.eval_temperature,
            "seed": cfg.seed,
        },
    }
    table = format_table(rows, stages.records, total, cfg, summary)
    (out / "quickstart.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "table.md").write_text(table + "\n")
    steps.finish_tracking(out, summary)
    return QuickstartResult(out, stages.records, rows, table, total, summary)


def _panel_feedback(cfg: QuickstartConfig, db, panel, actor: str) -> tuple[None, dict[str, Any]]:
    from sqlalchemy import func, select

    from annotation_ui.items import build_items
    from annotation_ui.panel import run_panel
    from annotation_ui.quality import quality_report
    from db.models import RankingItem

    with db.session() as session:
        before = session.scalar(select(func.max(RankingItem.id))) or 0
        items = build_items(
            session,
            k=cfg.items_k,
            selection="execution_ties_first",
            required_annotations=cfg.items_annotations,
            seed=cfg.seed,
            source="basic",
            split=cfg.sample_split,
            created_by=actor,
        )
    with (
        db.session() as session
    ):  # this run's items, in the order the app serves them; the last few for people
        order = list(
            session.scalars(
                select(RankingItem.id)
                .where(RankingItem.id > before)
                .order_by(RankingItem.priority.desc(), RankingItem.id)
            )
        )
    ranked = order[: max(0, len(order) - cfg.items_left_open)]
    result = run_panel(db, panel, items=ranked)
    with db.session() as session:
        agreement = quality_report(session).agreement
    return None, {
        "annotators": panel.annotators,
        "items": result.items,
        "rankings": result.rankings,
        "items_built": items,
        "alpha": agreement.alpha_ordinal,
        "tau_b": agreement.mean_tau_b,
        "shared_items": agreement.shared_items,
    }


def _reward_model_summary(record: StageRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    m = record.info["metrics"]
    return {
        "heldout_accuracy": m.get("held_out_accuracy"),
        "heldout_accuracy_same_verdict": m.get("held_out_accuracy_same_verdict"),
        "heldout_accuracy_different_verdict": m.get("held_out_accuracy_different_verdict"),
        "pairs": (m.get("num_pairs") or 0) + (m.get("num_held_out") or 0),
        "held_out_pairs": m.get("num_held_out"),
        "train_s": record.seconds,
    }
