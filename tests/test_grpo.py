"""GRPO for real at tiny size: pool prompts, dataset columns reaching the rewards, weights, lineage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from _train_helpers import TINY_RUN, max_weight_change

from alignment.grpo import GRPORecipeConfig, build_dataset, resolve_reward, train
from codealign.config import ConfigError, load_config
from codealign.errors import UserError
from db.models import Policy
from db.session import session_scope

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

# A reward with variance even for a random-weight model (execution alone gives every sample -1: zero
# advantage, zero gradient). It records the columns it received so the test can check them.
REWARD_MODULE = """
import json, os
def length_reward(prompts, completions, **columns):
    with open(os.environ["GRPO_TEST_LOG"], "a") as fh:
        fh.write(json.dumps({"keys": sorted(columns), "tests": columns["tests"][0],
                             "entry_point": columns["entry_point"][0], "prompt": prompts[0]}) + "\\n")
    return [min(len(c), 40) / 40 for c in completions]
"""


@pytest.fixture
def length_reward(tmp_path, monkeypatch):
    (tmp_path / "grpo_test_rewards.py").write_text(REWARD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    log = tmp_path / "reward_calls.jsonl"
    monkeypatch.setenv("GRPO_TEST_LOG", str(log))
    yield log
    sys.modules.pop("grpo_test_rewards", None)


def _cfg(model_dir, out, **extra):
    run = {k: v for k, v in TINY_RUN.items() if k != "max_length"}
    return load_config(
        GRPORecipeConfig,
        None,
        {
            **run,
            "model_name_or_path": str(model_dir),
            "output_dir": str(out),
            "learning_rate": 1e-2,
            "num_generations": 4,
            "max_completion_length": 12,
            "reward_funcs": ["execution", "grpo_test_rewards:length_reward"],
            "reward_weights": [1.0, 0.5],
            "tasks": {"load_from": "generator", "limit": 8},
            **extra,
        },
    )


def test_grpo_trains_with_columns_reaching_the_rewards(db, db_url, tiny_model_dir, tmp_path, length_reward):
    outcome = train(_cfg(tiny_model_dir, tmp_path / "grpo"), db)

    calls = [json.loads(line) for line in length_reward.read_text().splitlines()]
    assert calls and {"tests", "entry_point", "task_id"} <= set(calls[0]["keys"])
    assert calls[0]["tests"][0].startswith("assert ") and calls[0]["entry_point"] in calls[0]["prompt"]
    assert outcome.metrics["num_prompts"] == 8
    logged = [e for e in outcome.metrics["log_history"] if "rewards/execution_reward/mean" in e]
    assert logged and all(e["rewards/execution_reward/mean"] <= 1.0 for e in logged)  # the real engine ran
    assert max_weight_change(tiny_model_dir, tmp_path / "grpo") > 0
    # 2 steps x 4 completions (per-device batch 4, no accumulation, one process): the report's sample budget
    assert outcome.metrics["num_completions"] == 8
    assert [e["num_completions"] for e in logged] == [4 * e["step"] for e in logged]
    with session_scope(db_url) as s:
        policy = s.get(Policy, outcome.policy_id)
        assert policy.stage == "grpo" and policy.config["reward_weights"] == [1.0, 0.5]


@pytest.mark.parametrize(
    ("options", "completions"),
    [
        ({}, 3 * 4 * 2),  # default: one generation batch (4 x 2 accumulation) per optimizer step
        ({"steps_per_generation": 4}, 2 * 16),  # 6 micro-batches: generations at micro-batch 0 and 4
        ({"num_iterations": 2}, 2 * 8),  # each generation batch is trained on twice
    ],
)
def test_completions_sampled_follows_trl_generation_schedule(tmp_path, options, completions):
    from trl import GRPOConfig

    from alignment.grpo import completions_sampled

    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_generations=4,
        use_cpu=True,
        report_to=[],
        **options,
    )
    assert completions_sampled(3, args) == completions


def test_prompts_come_from_the_pool_split_by_default(db, tiny_model_dir, tmp_path):
    data = build_dataset(_cfg(tiny_model_dir, tmp_path), db)
    assert data.column_names == ["prompt", "tests", "entry_point", "task_id"]
    assert all(t.startswith("basic/pool/") for t in data["task_id"])


def test_reward_resolution_errors(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path)
    with pytest.raises(UserError, match="unknown reward 'exec'"):
        resolve_reward("exec", cfg)
    with pytest.raises(UserError, match="cannot load 'nosuch.module:fn'"):
        resolve_reward("nosuch.module:fn", cfg)
    with pytest.raises(UserError, match="reward_model_path is not set"):
        resolve_reward("reward_model", cfg)
    with pytest.raises(ConfigError, match="reward_weights: 1 weights for 2 reward_funcs"):
        _cfg(tiny_model_dir, tmp_path, reward_weights=[1.0])


def test_engine_rewards_get_unit_weights_so_reward_weights_rule(tiny_model_dir, tmp_path):
    static = resolve_reward("static", _cfg(tiny_model_dir, tmp_path))
    assert static.config.static_weight == 1.0 and static.config.execution_weight == 1.0
    combined = resolve_reward(
        "combined", _cfg(tiny_model_dir, tmp_path, reward_config=str(CONFIGS / "reward_weights.yaml"))
    )
    assert combined.config.static_weight == 0.1  # combined keeps the reward config's own weights


def test_shipped_yaml_builds_trl_config():
    from trl import GRPOConfig

    from alignment.recipe import trainer_args

    cfg = load_config(GRPORecipeConfig, CONFIGS / "grpo.yaml")
    args = trainer_args(cfg, GRPOConfig)
    assert (args.num_generations, args.reward_weights, args.beta) == (8, [1.0], 0.0)
    assert cfg.tasks.splits == ["pool"]
    from reward.rewards import RewardFunctionConfig

    assert load_config(RewardFunctionConfig, cfg.reward_config).shaping == "binary"  # resolved from any cwd
