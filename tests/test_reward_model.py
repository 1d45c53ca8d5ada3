"""Reward model for real at tiny size: held-out pairwise accuracy, the scorer, LoRA keeps the score head."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_helpers import TINY_RUN, seed_scored_tasks

from alignment.pairs import PreferencePair
from alignment.reward_model import RewardModelRecipeConfig, RewardModelScorer, pairwise_accuracy, train
from codealign.config import ConfigError, load_config
from db.models import Policy
from db.session import Database, session_scope

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _cfg(model_dir, out, **extra):
    return load_config(
        RewardModelRecipeConfig,
        None,
        {
            **TINY_RUN,
            "model_name_or_path": str(model_dir),
            "output_dir": str(out),
            "learning_rate": 1e-2,
            "max_steps": 3,
            "eval_fraction": 0.25,
            "pairs": {"splits": ["train"]},
            **extra,
        },
    )


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory, tiny_model_dir):
    """One reward-model run shared by the tests below (training is the expensive part)."""
    from db.migrate import upgrade
    from db.session import dispose_engines

    root = tmp_path_factory.mktemp("rm")
    url = f"sqlite:///{root / 'rm.db'}"
    upgrade(Database.at(url))
    seed_scored_tasks(url, n_tasks=12)
    outcome = train(_cfg(tiny_model_dir, root / "rm"), Database.at(url))
    yield outcome, url
    dispose_engines()


def test_training_reports_held_out_accuracy_and_registers(trained_rm):
    outcome, url = trained_rm
    m = outcome.metrics
    assert m["num_pairs"] + m["num_held_out"] == 12 and m["num_held_out"] >= 1
    assert 0.0 <= m["held_out_accuracy"] <= 1.0 and 0.0 <= m["train_accuracy"] <= 1.0
    with session_scope(url) as s:
        policy = s.get(Policy, outcome.policy_id)
        assert policy.stage == "reward_model" and policy.checkpoint_path == outcome.output_dir


def test_scorer_is_deterministic_batched_and_fits_the_reward_engine(trained_rm):
    outcome, _ = trained_rm
    scorer = RewardModelScorer(outcome.output_dir, batch_size=2)
    prompts = ["def f(x):\n"] * 3
    completions = ["    return x\n", "    return x + 1\n", "    pass\n"]
    scores = scorer(prompts, completions)
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert scores == scorer(prompts, completions)
    # batching and padding must not change a score beyond float32 rounding: the kernels differ with the batch's
    # shape (measured up to 1.6e-5 apart); a padding or pooling bug moves a score by 1e-2 and more
    assert RewardModelScorer(outcome.output_dir, batch_size=1)(prompts, completions) == pytest.approx(
        scores, abs=1e-4
    )
    fn = scorer.reward_function()
    assert fn.__name__ == "reward_model"
    assert fn(prompts, completions, tests=[["assert True"]] * 3, entry_point=["f"] * 3) == scores


def test_pairwise_accuracy_by_hand():
    pairs = [
        PreferencePair("p", "good", "bad", 1.0, "execution", "t"),
        PreferencePair("p", "bad", "good", 1.0, "execution", "t"),
        PreferencePair("p", "good", "good", 1.0, "execution", "t"),
    ]

    def score(prompts, completions):
        return [1.0 if c == "good" else 0.0 for c in completions]

    assert pairwise_accuracy(score, pairs) == pytest.approx(1 / 3)  # a tie counts as wrong


def test_lora_reward_model_saves_the_score_head(db, db_url, tiny_model_dir, tmp_path):
    from safetensors import safe_open

    seed_scored_tasks(db_url, n_tasks=6)
    out = tmp_path / "rm_lora"
    outcome = train(_cfg(tiny_model_dir, out, max_steps=1, lora={"enabled": True, "r": 4}), db)
    with safe_open(str(out / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert any("score" in key for key in f.keys())  # noqa: SIM118 (safe_open is no dict)
    assert "held_out_accuracy" in outcome.metrics  # the merged model loads as a scorer


def test_config_checks():
    with pytest.raises(ConfigError, match="eval_fraction"):
        load_config(RewardModelRecipeConfig, None, {"eval_fraction": 1.0})
    from trl import RewardConfig

    from alignment.recipe import trainer_args

    args = trainer_args(load_config(RewardModelRecipeConfig, CONFIGS / "reward_model.yaml"), RewardConfig)
    assert args.max_length == 384 and args.num_train_epochs == 2
