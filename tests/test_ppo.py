"""PPO recipe (alignment/ppo.py): real tiny runs on CPU, the grad-accumulation invariant, config errors, ZeRO-3."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignment.config import ConfigError, load_config
from alignment.errors import UserError
from alignment.ppo import PPORecipeConfig, load_reward_funcs, ppo_update, train

REPO = Path(__file__).resolve().parents[1]
TOY_TASKS = 8


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide singletons; each test builds its own Accelerator."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def tiny_policy_dir(tiny_model_dir) -> str:
    return str(tiny_model_dir)


@pytest.fixture
def toy_db(db_url) -> str:
    """A temp DB holding TOY_TASKS pool tasks of dataset 'toy'."""
    from alignment.tasks.importer import import_tasks
    from alignment.tasks.spec import TaskSpec
    from db.session import session_scope

    specs = [
        TaskSpec(task_id=f"toy/{i}", prompt=f"def f{i}(x):\n", entry_point=f"f{i}",
                 tests=[f"assert f{i}(1) == {i}"], split="pool")
        for i in range(TOY_TASKS)
    ]
    with session_scope(db_url) as session:
        import_tasks(session, specs, "toy", "cli:test")
    return db_url


class RecordingReward:
    """Rewards long answers (random models vary in length, so advantages are not all 0); remembers its calls."""

    __name__ = "length"

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, prompts, completions, **columns):
        self.calls.append({"prompts": prompts, "completions": completions, **columns})
        return [len(c) / 10 for c in completions]


def tiny_config(policy_dir: str, output_dir: Path, **overrides) -> PPORecipeConfig:
    fields = {"model_name_or_path": policy_dir, "tasks": {"dataset": "toy", "splits": ["pool"]}, "output_dir": str(output_dir),
              "max_completion_length": 12, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2,
              "max_steps": 3, "num_ppo_epochs": 2, "learning_rate": 1e-3, "reward_funcs": ["unused"]}
    return load_config(PPORecipeConfig, None, {**fields, **overrides})


def _weights(path: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def test_tiny_run_trains_logs_and_saves_a_loadable_policy(tiny_policy_dir, toy_db, tmp_path):
    reward = RecordingReward()
    cfg = tiny_config(tiny_policy_dir, tmp_path / "out", num_generations=2)
    outcome = train(cfg, reward_funcs=[reward])

    # every rollout scored rollout_batch_size answers, with the task's columns, prompts repeated per generation
    assert len(reward.calls) == cfg.max_steps
    call = reward.calls[0]
    assert len(call["completions"]) == cfg.rollout_batch_size
    assert call["prompts"][0] == call["prompts"][1]
    assert call["tests"][0] == [f"assert {call['entry_point'][0]}(1) == {call['entry_point'][0][1:]}"]
    assert all(len(ids) <= cfg.max_completion_length for ids in call["completion_ids"])

    state = json.loads((tmp_path / "out" / "trainer_state.json").read_text())
    assert [row["step"] for row in state["log_history"]] == [1, 2, 3]
    first = state["log_history"][0]
    for key in ("objective/kl", "objective/entropy", "policy/clipfrac", "loss/value",
                "value/explained_variance", "kl_coef", "rewards/length"):
        assert key in first
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before any update
    assert outcome.metrics["global_step"] == 3 and len(outcome.metrics["log_history"]) == 3
    assert outcome.stage == "ppo" and outcome.policy_id is not None  # registered, with its lineage

    before, after = _weights(tiny_policy_dir), _weights(outcome.output_dir)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    critic = tmp_path / "out" / "critic"
    assert (critic / "value_head.safetensors").is_file() and (critic / "backbone").is_dir()


def test_lora_shared_critic_adaptive_kl_early_stop(tiny_policy_dir, toy_db, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(tiny_policy_dir, tmp_path / "out", lora={"enabled": True, "r": 4}, critic_backbone="shared",
                      adaptive_kl_target=0.01, adaptive_kl_horizon=10, kl_estimator="k3",
                      early_stop_kl=1e-12, num_ppo_epochs=3, learning_rate=1e-2)
    train(cfg, reward_funcs=[RecordingReward()])
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    # KL is measured on the weights a minibatch starts from: epoch 1 sees the rollout's own policy (KL 0), epoch 2
    # sees the first update, above the tiny threshold, so it stops there instead of running epoch 3 -- unless
    # the rollout had nothing to learn (all answers alike: zero advantages, the policy did not move)
    assert any(row["early_stopped"] for row in history)
    for row in history:
        moved = row["policy/approxkl"] > 0
        assert (row["early_stopped"], row["ppo_epochs_done"]) == ((1.0, 2) if moved else (0.0, 3))
    assert history[-1]["kl_coef"] != history[0]["kl_coef"]
    assert not (tmp_path / "out" / "critic" / "backbone").exists()
    # the adapter is kept, and the merged policy in output_dir is a plain checkpoint that moved
    base = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    assert isinstance(PeftModel.from_pretrained(base, tmp_path / "out" / "adapter"), PeftModel)
    before, after = _weights(tiny_policy_dir), _weights(str(tmp_path / "out"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


def _fixed_rollout(policy_dir: str, batch: int = 8):
    """A rollout with varied response lengths, so token-count normalisation matters."""
    from alignment.ppo import Rollout

    gen = torch.Generator().manual_seed(0)
    queries = torch.randint(3, 200, (batch, 5), generator=gen)
    query_mask = torch.ones_like(queries)
    query_mask[::3, :2] = 0  # some left padding
    responses = torch.randint(3, 200, (batch, 7), generator=gen)
    lengths = torch.tensor([7, 1, 3, 5, 2, 7, 4, 6])
    mask = (torch.arange(7)[None] < lengths[:, None]).float()
    return Rollout(queries, query_mask, responses, mask,
                   logprobs=-torch.rand(batch, 7, generator=gen) * 3 - 3,
                   values=torch.randn(batch, 7, generator=gen) * 0.1,
                   advantages=torch.randn(batch, 7, generator=gen) * mask,
                   returns=torch.randn(batch, 7, generator=gen) * mask)


def _one_update(policy_dir: str, rollout, tmp_path: Path, per_device: int, accumulation: int):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    from alignment.ppo import build_actor_critic

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    cfg = tiny_config(policy_dir, tmp_path, per_device_train_batch_size=per_device,
                      gradient_accumulation_steps=accumulation, num_ppo_epochs=1, max_grad_norm=1e9)
    accelerator = Accelerator(gradient_accumulation_steps=accumulation)
    torch.manual_seed(0)
    model, _ = build_actor_critic(cfg, accelerator)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # new = old - grad: compares gradients directly
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    stats = ppo_update(accelerator, model, optimizer, scheduler, rollout, cfg, torch.Generator().manual_seed(1))
    return {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}, stats


def test_batch_1_times_accumulation_8_equals_batch_8(tiny_policy_dir, tmp_path):
    rollout = _fixed_rollout(tiny_policy_dir)
    small, small_stats = _one_update(tiny_policy_dir, rollout, tmp_path, per_device=1, accumulation=8)
    large, large_stats = _one_update(tiny_policy_dir, copy.deepcopy(rollout), tmp_path, per_device=8, accumulation=1)
    from transformers import AutoModelForCausalLM

    start = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).state_dict()
    moved = [k for k in start if not torch.allclose(start[k], large[f"policy.{k}"])]
    assert moved, "the update changed nothing: the comparison would be vacuous"
    for key in large:
        torch.testing.assert_close(small[key], large[key], rtol=1e-4, atol=1e-6, msg=key)
    assert small_stats["loss/policy"] == pytest.approx(large_stats["loss/policy"], rel=1e-5)


def test_shipped_config_loads_and_bad_values_name_the_field():
    cfg = load_config(PPORecipeConfig, REPO / "configs" / "ppo.yaml")
    assert cfg.rollout_batch_size % cfg.num_generations == 0
    with pytest.raises(ConfigError, match="num_generations=3"):
        load_config(PPORecipeConfig, None, {"num_generations": 3, "per_device_train_batch_size": 4})
    with pytest.raises(ConfigError, match="reward_weights has 1 entries but reward_funcs has 2"):
        load_config(PPORecipeConfig, None, {"reward_funcs": ["a", "b"], "reward_weights": [1.0]})
    with pytest.raises(ConfigError, match="cliprange_value"):
        load_config(PPORecipeConfig, None, ["clip_range_value=0.1"])
    with pytest.raises(UserError, match="no_such_module"):
        load_reward_funcs(load_config(PPORecipeConfig, None, {"reward_funcs": ["no_such_module:fn"]}))


def test_missing_policy_and_empty_dataset_are_one_line_errors(tiny_policy_dir, toy_db, tmp_path):
    with pytest.raises(UserError, match="model_name_or_path"):
        train(tiny_config(str(tmp_path / "nope"), tmp_path / "out"), reward_funcs=[RecordingReward()])
    with pytest.raises(UserError, match="no 'toy' tasks in split"):
        train(tiny_config(tiny_policy_dir, tmp_path / "out", tasks={"dataset": "toy", "splits": ["test"]}),
              reward_funcs=[RecordingReward()])


TOY_REWARD_MODULE = """\
def has_return(prompts, completions, **columns):
    assert "tests" in columns and "entry_point" in columns
    return [1.0 if "return" in c else 0.0 for c in completions]
"""


@pytest.mark.distributed
def test_zero3_two_cpu_processes_through_the_cli(tiny_policy_dir, toy_db, tmp_path):
    (tmp_path / "toy_reward_ppo.py").write_text(TOY_REWARD_MODULE)
    config = tmp_path / "ppo.yaml"
    out = tmp_path / "out"
    config.write_text(f"model_name_or_path: {tiny_policy_dir}\noutput_dir: {out}\ntasks: {{dataset: toy, splits: [pool]}}\n"
                      "reward_funcs: ['toy_reward_ppo:has_return']\n")
    env = {**os.environ, "CODEALIGN_DB_URL": toy_db, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "alignment.cli", "train", "ppo", "--config", str(config),
           "max_completion_length=8", "per_device_train_batch_size=2", "gradient_accumulation_steps=2",
           "max_steps=2", "num_ppo_epochs=1", "learning_rate=1e-2",
           "--accelerate", str(REPO / "configs" / "accelerate" / "zero3_cpu.yaml"), "--num-processes", "2"]
    proc = subprocess.run(cmd, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert history[-1]["episodes"] == 2 * 2 * 2 * 2  # steps x processes x per-device batch x accumulation
    before, after = _weights(tiny_policy_dir), _weights(str(out))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    from sqlalchemy import select

    from db.models import Policy
    from db.session import session_scope

    with session_scope(toy_db) as session:  # rank 0 registered the run and the policy, once
        policies = session.scalars(select(Policy).where(Policy.stage == "ppo")).all()
        assert [p.checkpoint_path for p in policies] == [str(out)]
