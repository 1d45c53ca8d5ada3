"""The whole quickstart at micro size: every stage runs for real, the table and the DB rows come out.

Sampling of the RL pool is steered (sample 0 of each prompt is the reference solution) so the random test
model still yields execution pairs for DPO; everything else — training, GRPO's own generation, sandboxed
execution, evaluation, items, report — is the real code path.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

import alignment.generation
from alignment.quickstart import DEFAULT_CONFIG, QuickstartConfig, check_stage_sections, run_quickstart
from codealign.config import load_config
from codealign.tasks.basic import generate_suite
from db.models import EvalResult, Policy, RankingItem, TrainingRun
from db.session import session_scope

MICRO = {
    "model_preset": "test",
    "sample_prompts": 6,
    "sample_k": 3,
    "max_new_tokens": 8,
    "batch_size": 16,
    "stages": ["sft", "dpo", "grpo", "control"],
    "sft": {"tasks": {"limit": 16}, "max_steps": 2, "per_device_train_batch_size": 8, "logging_steps": 1},
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
    "annotate_k": 2,
}


@pytest.fixture
def steered_sampling(monkeypatch):
    references = {t.prompt: t.reference_solution for t in generate_suite(0)}
    real_generate = alignment.generation.generate

    def generate(policy, prompts, n=1, *args, **kwargs):
        sampled = real_generate(policy, prompts, n, *args, **kwargs)
        return [[references[p], *texts[1:]] for p, texts in zip(prompts, sampled)]

    monkeypatch.setattr(alignment.generation, "generate", generate)


def test_shipped_config_loads():
    cfg = load_config(QuickstartConfig, DEFAULT_CONFIG)
    check_stage_sections(load_config(QuickstartConfig, DEFAULT_CONFIG, ["stages=[sft,dpo,grpo,control,ppo]"]))
    assert cfg.eval_n >= 8 and cfg.eval_temperature == 0.8 and cfg.eval_split == "test"
    assert {"sft", "dpo", "grpo", "control"} <= set(cfg.stages)


def test_micro_quickstart_end_to_end(db, db_url, tmp_path, steered_sampling, capsys):
    cfg = load_config(QuickstartConfig, None, {**MICRO, "output_dir": str(tmp_path / "qs")})
    result = run_quickstart(cfg, db)

    assert [row["policy"] for row in result.rows] == ["sft", "dpo", "grpo", "control"]
    for row in result.rows:
        assert 0.0 <= row["pass@1"] <= row["pass@2"] <= 1.0 and row["tasks"] == 3
    lines = result.table.splitlines()
    assert lines[0].startswith("| policy | pass@1 | pass@2 | Δ pass@1 vs SFT")
    assert [line.split("|")[1].strip() for line in lines[2:6]] == ["sft", "dpo", "grpo", "control"]
    assert "stage wall times: setup" in result.table and "total:" in result.table

    with session_scope(db_url) as session:
        runs = session.scalars(select(TrainingRun)).all()
        assert sorted(r.stage for r in runs) == ["dpo", "grpo", "sft", "sft"]  # control is an SFT run
        assert all(r.status == "completed" for r in runs)
        policies = {p.name: p for p in session.scalars(select(Policy))}
        sft = policies["qs-sft"]
        assert sft.parent.stage == "external"  # the freshly initialised base model
        assert all(policies[f"qs-{name}"].parent_id == sft.id for name in ("dpo", "grpo", "control"))
        assert len(session.scalars(select(EvalResult)).all()) == 4
        assert session.scalars(select(RankingItem)).first() is not None
    assert (result.output_dir / "report" / "index.html").is_file()

    rerun = run_quickstart(cfg, db)  # every stage is reused: same numbers, no new rows
    assert rerun.rows == result.rows and all(stage.reused for stage in rerun.stages)
    with session_scope(db_url) as session:
        assert len(session.scalars(select(EvalResult)).all()) == 4


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
        "stages": ["sft", "ppo"],
        "ppo": ppo,
        "report": False,
        "annotate_k": 0,
        "output_dir": str(tmp_path / "qs"),
    }
    result = run_quickstart(load_config(QuickstartConfig, None, overrides), db)
    assert [row["policy"] for row in result.rows] == ["sft", "ppo"]
    with session_scope(db_url) as session:
        assert session.scalars(select(Policy).where(Policy.name == "qs-ppo")).one().stage == "ppo"


def test_control_and_ppo_are_matched_to_dpo_and_grpo(tmp_path):
    """The control gets DPO's steps, batch and lr; PPO gets GRPO's number of sampled completions."""
    from alignment.quickstart import StageRecord, _control_config, _ppo_config

    cfg = load_config(QuickstartConfig, DEFAULT_CONFIG)
    sft = StageRecord("sft", 1.0, str(tmp_path / "sft"), {"policy": "qs-sft"})
    trained = {
        "dpo": StageRecord(
            "dpo", 1.0, "x", {"metrics": {"global_step": 7}, "batch_size": 16, "learning_rate": 2e-4}
        ),
        "grpo": StageRecord("grpo", 1.0, "y", {"metrics": {"num_completions": 100}}),
    }
    control = _control_config(cfg, tmp_path, sft, trained)
    assert (control.max_steps, control.per_device_train_batch_size, control.learning_rate) == (7, 16, 2e-4)
    ppo = _ppo_config(cfg, tmp_path, sft, trained)
    assert ppo.max_steps == -(-100 // ppo.rollout_batch_size)
    explicit = load_config(QuickstartConfig, DEFAULT_CONFIG, {"ppo": {"max_steps": 3}})
    assert _ppo_config(explicit, tmp_path, sft, trained).max_steps == 3
