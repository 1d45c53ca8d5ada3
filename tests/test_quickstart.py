"""The whole quickstart at micro size: every stage runs for real, the table and the DB rows come out.

Sampling of the RL pool is steered (sample 0 of each prompt is the reference solution) so the random test
model still yields execution pairs for DPO; everything else — training, GRPO's own generation, sandboxed
execution, evaluation, items, report — is the real code path.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import alignment.generation
from alignment.quickstart import DEFAULT_CONFIG, QuickstartConfig, check_stage_sections, run_quickstart
from codealign.config import load_config
from codealign.tasks.basic import generate_suite
from db.models import Annotator, EvalResult, Policy, RankingItem, TrainingRun
from db.session import session_scope

MICRO = {
    "model_preset": "test",
    "sample_prompts": 6,
    "sample_k": 4,
    "max_new_tokens": 8,
    "batch_size": 16,
    "items_left_open": 1,
    "stages": ["sft", "reward_model", "dpo", "grpo", "control"],
    "sft": {"tasks": {"limit": 16}, "max_steps": 2, "per_device_train_batch_size": 8, "logging_steps": 1},
    "reward_model": {"max_steps": 2, "per_device_train_batch_size": 4, "eval_fraction": 0.34},
    "dpo": {"max_steps": 2, "per_device_train_batch_size": 4, "pairs": {"min_chosen_pass": 1.0}},
    "grpo": {
        "max_steps": 1,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 8,
        "tasks": {"limit": 4},
    },
    "eval_n": 2,
    "eval_ks": [1, 2],
    "eval_limit": 3,
}


@pytest.fixture
def steered_sampling(monkeypatch):
    """The micro model is random: its samples of a task with a reference become the reference, a near miss
    (one step dropped) and the reference in a sloppy style, so execution pairs, partial passes and
    readability differences exist for the panel, the reward model and DPO."""
    references = {t.prompt: t.reference_solution for t in generate_suite(0)}
    real_generate = alignment.generation.generate

    def generate(policy, prompts, n=1, *args, **kwargs):
        sampled = real_generate(policy, prompts, n, *args, **kwargs)
        out = []
        for prompt, texts in zip(prompts, sampled):
            ref = references.get(prompt)
            if ref is not None and n >= 3:
                lines = ref.splitlines(keepends=True)
                near = "".join(lines[:1] + lines[2:]) if len(lines) > 2 else "    return None\n"
                texts = [ref, near, "    unused = 0\n" + ref, *texts[3:]]
            out.append(texts)
        return out

    monkeypatch.setattr(alignment.generation, "generate", generate)


def test_shipped_config_loads():
    cfg = load_config(QuickstartConfig, DEFAULT_CONFIG)
    every = "stages=[sft,reward_model,dpo,grpo,grpo_exec,ppo,control]"
    check_stage_sections(load_config(QuickstartConfig, DEFAULT_CONFIG, [every]))
    assert cfg.eval_n >= 8 and cfg.eval_temperature == 0.8 and cfg.eval_split == "test"
    assert {"sft", "reward_model", "dpo", "grpo", "control"} <= set(
        cfg.stages
    ) and cfg.suite_styles == "mixed"


def test_micro_quickstart_end_to_end(db, db_url, tmp_path, steered_sampling, capsys):
    cfg = load_config(QuickstartConfig, None, {**MICRO, "output_dir": str(tmp_path / "qs")})
    result = run_quickstart(cfg, db)

    assert [row["policy"] for row in result.rows] == ["sft", "dpo", "grpo", "control"]
    for row in result.rows:
        assert 0.0 <= row["pass@1"] <= row["pass@2"] <= 1.0 and row["tasks"] == 3
        assert 0.0 <= row["readability_issue_rate"] <= 1.0
    assert (
        result.rows[2]["reward_signals"] == ["execution", "human"] and result.rows[3]["reward_signals"] == []
    )
    assert all(
        0.0 <= r["readability_win_rate"] <= 1.0 and len(r["readability_win_ci"]) == 2 for r in result.rows[1:]
    )
    lines = result.table.splitlines()
    assert lines[0].startswith("| policy | signals | pass@1 | pass@2 | Δ pass@1 | win vs SFT")
    assert [line.split("|")[1].strip() for line in lines[2:6]] == ["sft", "dpo", "grpo", "control"]
    assert "stage wall times: setup" in result.table and "total:" in result.table
    summary = json.loads((result.output_dir / "quickstart.json").read_text())
    assert summary["panel"]["annotators"] == 5 and summary["panel"]["items"] > 0
    assert summary["panel"]["items_built"] - summary["panel"]["items"] >= 1  # some left for people
    assert summary["reward_model"]["pairs"] > 0 and "heldout_accuracy_same_verdict" in summary["reward_model"]

    with session_scope(db_url) as session:
        runs = session.scalars(select(TrainingRun)).all()
        assert sorted(r.stage for r in runs) == ["dpo", "grpo", "reward_model", "sft", "sft"]  # control: SFT
        assert all(r.status == "completed" for r in runs)
        policies = {p.name: p for p in session.scalars(select(Policy))}
        sft = policies["qs-sft"]
        assert sft.parent.stage == "external"  # the freshly initialised base model
        assert all(
            policies[f"qs-{name}"].parent_id == sft.id for name in ("reward_model", "dpo", "grpo", "control")
        )
        assert session.scalars(select(Annotator).where(Annotator.simulated)).all()  # the panel ranked
        assert len(session.scalars(select(EvalResult)).all()) == 4
        assert session.scalars(select(RankingItem)).first() is not None
    assert (result.output_dir / "report" / "index.html").is_file()
    assert_tracked(result.output_dir, ["sft", "reward_model", "dpo", "grpo", "control"])

    rerun = run_quickstart(cfg, db)  # every stage is reused: same numbers, no new rows
    assert rerun.rows == result.rows and all(stage.reused for stage in rerun.stages)
    with session_scope(db_url) as session:
        assert len(session.scalars(select(EvalResult)).all()) == 4
    assert_tracked(result.output_dir, ["sft", "reward_model", "dpo", "grpo", "control"])  # no new MLflow runs


def assert_tracked(out, stages: list[str]) -> None:
    """The MLflow store under the output directory: the quickstart's run, and one child run per stage with
    its config, TRL's logged metrics, the held-out eval (metrics and files); all FINISHED."""
    from mlflow.tracking import MlflowClient

    from alignment.tracking import local_store

    client = MlflowClient(local_store(out / "mlruns"))
    experiment = client.get_experiment_by_name(out.name)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags["codealign.stage"] == "quickstart"]
    children = {r.data.tags["codealign.policy"].removeprefix(f"{out.name}-"): r for r in runs if r != parent}
    assert sorted(children) == sorted(stages) and len(runs) == len(stages) + 1
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    assert (
        parent.data.metrics["sft/pass_at_1"]
        == json.loads((out / "quickstart.json").read_text())["rows"][0]["pass@1"]
    )
    assert {"quickstart.json", "table.md", "report"} <= {
        f.path for f in client.list_artifacts(parent.info.run_id)
    }
    sft = children["sft"]
    assert sft.data.params["learning_rate"] == "0.001" and sft.data.params["tasks.limit"] == "16"
    assert [m.step for m in client.get_metric_history(sft.info.run_id, "loss")] == [
        1,
        2,
    ]  # TRL's name, per step
    for name in set(stages) - {"reward_model"}:
        assert "eval/pass_at_1" in children[name].data.metrics
        assert [f.path for f in client.list_artifacts(children[name].info.run_id, "eval")]
    assert "eval/readability_win_rate" in children["dpo"].data.metrics


def test_bad_config_is_one_line_error():
    from codealign.errors import UserError

    with pytest.raises(UserError, match="stages: unknown stage 'rlhf'"):
        QuickstartConfig(stages=["sft", "rlhf"])
    with pytest.raises(UserError, match="eval_n"):
        QuickstartConfig(eval_n=2, eval_ks=[1, 4])
    with pytest.raises(UserError, match="section 'dpo'.*'betta'.*did you mean 'beta'"):
        check_stage_sections(QuickstartConfig(dpo={"betta": 0.1}))


@pytest.mark.slow
def test_micro_quickstart_with_ppo(db, db_url, tmp_path, steered_sampling):
    ppo = {
        "max_steps": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "num_mini_batches": 1,
        "max_completion_length": 8,
        "tasks": {"limit": 4},
    }
    overrides = {
        **MICRO,
        "stages": ["sft", "reward_model", "ppo"],
        "ppo": ppo,
        "report": False,
        "output_dir": str(tmp_path / "qs"),
    }
    result = run_quickstart(load_config(QuickstartConfig, None, overrides), db)
    assert [row["policy"] for row in result.rows] == ["sft", "ppo"]
    with session_scope(db_url) as session:
        assert session.scalars(select(Policy).where(Policy.name == "qs-ppo")).one().stage == "ppo"


def test_sft_only_quickstart_skips_sampling_and_the_panel(db, db_url, tmp_path):
    """Nothing after SFT learns from samples or rankings, so an SFT study samples only to evaluate."""
    overrides = {**MICRO, "stages": ["sft"], "report": False, "output_dir": str(tmp_path / "qs")}
    result = run_quickstart(load_config(QuickstartConfig, None, overrides), db)
    assert [r.name for r in result.stages if r.name in ("sample_score", "panel", "eval_sft")] == ["eval_sft"]
    assert result.summary["panel"] is None and "panel:" not in result.table
    assert [row["policy"] for row in result.rows] == ["sft"]
    with session_scope(db_url) as session:
        assert session.scalars(select(RankingItem)).first() is None
        assert session.scalars(select(Annotator)).first() is None


def test_control_and_ppo_are_matched_to_dpo_and_grpo(tmp_path):
    """The control gets DPO's steps, batch and lr; PPO gets GRPO's number of sampled completions."""
    from alignment.quickstart import StageRecord
    from alignment.quickstart.steps import control_config, ppo_config

    cfg = load_config(QuickstartConfig, DEFAULT_CONFIG)
    sft = StageRecord("sft", 1.0, str(tmp_path / "sft"), {"policy": "qs-sft"})
    trained = {
        "dpo": StageRecord(
            "dpo", 1.0, "x", {"metrics": {"global_step": 7}, "batch_size": 16, "learning_rate": 2e-4}
        ),
        "grpo": StageRecord("grpo", 1.0, "y", {"metrics": {"num_completions": 100}}),
    }
    control = control_config(cfg, tmp_path, sft, trained)
    assert (control.max_steps, control.per_device_train_batch_size, control.learning_rate) == (7, 16, 2e-4)
    reward_model = StageRecord("reward_model", 1.0, str(tmp_path / "rm"), {})
    ppo = ppo_config(cfg, tmp_path, sft, trained, reward_model)
    assert ppo.max_steps == -(-100 // ppo.rollout_batch_size)
    explicit = load_config(QuickstartConfig, DEFAULT_CONFIG, {"ppo": {"max_steps": 3}})
    assert ppo_config(explicit, tmp_path, sft, trained, reward_model).max_steps == 3
    assert ppo.reward_funcs == ["combined"] and ppo.reward_model_path == str(tmp_path / "rm")


def test_micro_benchmark_writes_the_contract(tmp_path, steered_sampling):
    """Every method x 2 seeds at micro size: benchmark.json has the rows, per-seed values and means."""
    from alignment.benchmark import STAGES, BenchmarkConfig, run_benchmark

    ppo = {
        "max_steps": 1,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "num_mini_batches": 1,
    }
    quickstart = {
        **MICRO,
        "stages": STAGES,
        "report": False,
        "grpo_exec": MICRO["grpo"],
        "ppo": {**ppo, "num_generations": 2, "max_completion_length": 8, "tasks": {"limit": 4}},
        # a stage section may send its MLflow run to another store: its eval must be logged there too
        "control": {"mlflow": {"tracking_uri": str(tmp_path / "control-store")}},
    }
    cfg = BenchmarkConfig(output_dir=str(tmp_path / "bench"), seeds=[0, 1], quickstart=quickstart)
    summary = run_benchmark(cfg)

    written = json.loads((tmp_path / "bench" / "benchmark.json").read_text())
    assert written["seeds"] == [0, 1] == summary["seeds"]
    assert [r["policy"] for r in written["rows"]] == ["sft", "dpo", "grpo", "grpo_exec", "ppo", "control"]
    seeds = {
        s: json.loads((tmp_path / "bench" / f"seed-{s}" / "quickstart.json").read_text()) for s in (0, 1)
    }
    per_seed = {s: seeds[s]["rows"] for s in (0, 1)}
    for i, row in enumerate(written["rows"]):
        values = [per_seed[s][i]["pass@1"] for s in (0, 1)]
        assert row["per_seed"] == {"0": values[0], "1": values[1]}
        assert row["pass@1"] == pytest.approx(sum(values) / 2) and len(row["pass@1_ci"]) == 2
        for key in ("delta_pass@1", "readability_issue_rate", "readability_issue_rate_passing", "train_s"):
            assert key in row
    assert written["rows"][2]["reward_signals"] == ["execution", "human"] and written["rows"][3][
        "reward_signals"
    ] == ["execution"]
    assert 0 <= written["rows"][1]["readability_win_rate"] <= 1 and written["reward_model"]["pairs"] > 0
    assert written["panel"]["annotators"] == 5
    assert "| grpo_exec | execution |" in (tmp_path / "bench" / "table.md").read_text()
    assert_control_tracked_elsewhere(tmp_path / "control-store", per_seed)

    # a rerun reuses every stage: each seed's time is still what its stages took, not the rerun's wall time
    stage_sums = {str(s): round(sum(r["seconds"] for r in seeds[s]["stages"]), 1) for s in (0, 1)}
    assert summary["seconds_per_seed"] == stage_sums
    assert run_benchmark(cfg)["seconds_per_seed"] == stage_sums


def assert_control_tracked_elsewhere(store, per_seed) -> None:
    from mlflow.tracking import MlflowClient

    from alignment.tracking import local_store

    client = MlflowClient(local_store(store))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    logged = sorted(r.data.metrics["eval/pass_at_1"] for r in runs)
    control = [next(r["pass@1"] for r in rows if r["policy"] == "control") for rows in per_seed.values()]
    assert logged == sorted(control)  # one control run per seed
