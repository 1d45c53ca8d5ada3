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

from alignment.ppo import PPORecipeConfig, train
from alignment.ppo_step import load_reward_funcs, ppo_update
from codealign.config import ConfigError, load_config
from codealign.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TOY_TASKS = 8


def _reset_accelerate() -> None:
    """accelerate keeps process-wide singletons; each training builds its own Accelerator."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    _reset_accelerate()


@pytest.fixture
def tiny_policy_dir(tiny_model_dir) -> str:
    return str(tiny_model_dir)


@pytest.fixture
def toy_db(db, db_url) -> str:
    """A temp DB holding TOY_TASKS pool tasks of dataset 'toy'."""
    from codealign.tasks.spec import TaskSpec
    from db.session import session_scope
    from db.tasks import import_tasks

    specs = [
        TaskSpec(
            task_id=f"toy/{i}",
            prompt=f"def f{i}(x):\n",
            entry_point=f"f{i}",
            tests=[f"assert f{i}(1) == {i}"],
            split="pool",
        )
        for i in range(TOY_TASKS)
    ]
    with session_scope(db_url) as session:
        import_tasks(session, specs, "toy", "cli:test")
    return db_url


class RecordingReward:
    """Rewards long answers (random models vary in length, so advantages are not all 0); remembers its calls.

    ``fail_on_call=k`` raises on the k-th call instead, like a node lost in the middle of rollout k.
    """

    __name__ = "length"

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[dict] = []
        self.fail_on_call = fail_on_call

    def __call__(self, prompts, completions, **columns):
        if len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("node lost")
        self.calls.append({"prompts": prompts, "completions": completions, **columns})
        return [len(c) / 10 for c in completions]


def tiny_config(policy_dir: str, output_dir: Path, **overrides) -> PPORecipeConfig:
    fields = {
        "model_name_or_path": policy_dir,
        "tasks": {"dataset": "toy", "splits": ["pool"]},
        "output_dir": str(output_dir),
        "max_completion_length": 12,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "max_steps": 3,
        "num_ppo_epochs": 2,
        "learning_rate": 1e-3,
        "reward_funcs": ["unused"],
    }
    return load_config(PPORecipeConfig, None, {**fields, **overrides})


def mlflow_client(store: Path):
    from mlflow.tracking import MlflowClient

    from alignment.tracking import local_store

    return MlflowClient(local_store(store))


def mlflow_runs(store: Path) -> list:
    client = mlflow_client(store)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _weights(path: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def test_tiny_run_trains_logs_and_saves_a_loadable_policy(db, tiny_policy_dir, toy_db, tmp_path):
    reward = RecordingReward()
    cfg = tiny_config(tiny_policy_dir, tmp_path / "out", num_generations=2)
    outcome = train(cfg, db, reward_funcs=[reward])

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
    for key in (
        "objective/kl",
        "objective/entropy",
        "policy/clipfrac",
        "loss/value",
        "value/explained_variance",
        "kl_coef",
        "rewards/length",
    ):
        assert key in first
    assert first["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # policy == reference before any update
    assert outcome.metrics["global_step"] == 3 and len(outcome.metrics["log_history"]) == 3
    assert outcome.stage == "ppo" and outcome.policy_id is not None  # registered, with its lineage

    before, after = _weights(tiny_policy_dir), _weights(outcome.output_dir)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    critic = tmp_path / "out" / "critic"
    assert (critic / "value_head.safetensors").is_file() and (critic / "backbone").is_dir()


def test_lora_shared_critic_adaptive_kl_early_stop(db, tiny_policy_dir, toy_db, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(
        tiny_policy_dir,
        tmp_path / "out",
        lora={"enabled": True, "r": 4},
        critic_backbone="shared",
        adaptive_kl_target=0.01,
        adaptive_kl_horizon=10,
        kl_estimator="k3",
        early_stop_kl=1e-12,
        num_ppo_epochs=3,
        learning_rate=1e-2,
    )
    train(cfg, db, reward_funcs=[RecordingReward()])
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


def test_interrupted_run_resumes_from_its_checkpoint_exactly(db, tiny_policy_dir, toy_db, tmp_path):
    from db.models import TrainingRun
    from db.session import session_scope

    straight = train(
        tiny_config(tiny_policy_dir, tmp_path / "straight", max_steps=2), db, reward_funcs=[RecordingReward()]
    )
    _reset_accelerate()
    out = tmp_path / "out"
    cfg = tiny_config(
        tiny_policy_dir, out, max_steps=2, save_steps=1, save_total_limit=1, report_to=["mlflow"]
    )
    with pytest.raises(RuntimeError, match="node lost"):  # in step 2's rollout, after checkpoint-1
        train(cfg, db, reward_funcs=[RecordingReward(fail_on_call=2)])
    _reset_accelerate()
    (failed,) = mlflow_runs(tmp_path / "mlruns")  # report_to: [mlflow] -> mlruns beside output_dir
    assert failed.info.status == "FAILED"

    reward = RecordingReward()
    outcome = train(cfg, db, reward_funcs=[reward])

    assert outcome.resumed_from == str(out.resolve() / "checkpoint-1")
    assert len(reward.calls) == 1  # only step 2 ran: a restart would have sampled 2 rollouts
    assert outcome.metrics["global_step"] == 2
    assert outcome.metrics["num_completions"] == 2 * cfg.rollout_batch_size
    history = outcome.metrics["log_history"]
    assert [row["step"] for row in history] == [1, 2]  # step 1's entry comes from the checkpoint
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]  # save_total_limit 1
    with session_scope(toy_db) as session:
        run = session.get(TrainingRun, outcome.run_id)
        assert (run.status, run.metrics["resumed_from"]) == ("completed", outcome.resumed_from)
        assert len([r for r in session.query(TrainingRun) if r.output_dir == str(out.resolve())]) == 1
    # the resumed run continues the same MLflow run: step 1 logged before the failure, step 2 after
    (tracked,) = mlflow_runs(tmp_path / "mlruns")
    assert tracked.info.run_id == failed.info.run_id == run.metrics["mlflow_run_id"]
    assert tracked.info.status == "FINISHED" and tracked.data.params["kl_coef"] == str(cfg.kl_coef)
    client = mlflow_client(tmp_path / "mlruns")
    assert [m.step for m in client.get_metric_history(tracked.info.run_id, "objective/kl")] == [1, 2]

    # an exact continuation: same numbers and weights as the run that was never interrupted
    def numbers(rows):  # as JSON: NaN (explained variance of an all-zero step) equals itself there
        return json.dumps([{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows])

    assert numbers(history) == numbers(straight.metrics["log_history"])
    before, after = _weights(straight.output_dir), _weights(outcome.output_dir)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_checkpoint_restores_optimizer_scheduler_and_progress(tmp_path):
    from accelerate import Accelerator

    from alignment.ppo_checkpoint import complete_checkpoints, load_checkpoint, new_progress, save_checkpoint

    cfg = PPORecipeConfig(kl_coef=0.1, adaptive_kl_target=1.0)

    def build():
        _reset_accelerate()
        accelerator = Accelerator()
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=10)
        model, optimizer = accelerator.prepare(model, optimizer)
        progress = new_progress(cfg)
        accelerator.register_for_checkpointing(scheduler, progress)
        return accelerator, model, optimizer, scheduler, progress

    accelerator, model, optimizer, scheduler, progress = build()
    for step in (1, 2):
        model(torch.ones(2, 3)).sum().backward()
        optimizer.step(), scheduler.step(), optimizer.zero_grad()
        progress.moments.update(torch.tensor([1.0, 2.0, 4.0]))
        progress.kl.update(3.0, n_steps=100)
        progress.queue = torch.randperm(8, generator=progress.order_rng).tolist()[step:]
        progress.step, progress.elapsed = step, 1.5 * step
        progress.log_history.append({"step": step})
        save_checkpoint(accelerator, tmp_path, progress, save_total_limit=1)
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-2"]  # checkpoint-1 pruned

    accelerator, model2, optimizer2, scheduler2, resumed = build()
    load_checkpoint(accelerator, str(tmp_path / "checkpoint-2"))
    assert (resumed.step, resumed.queue, resumed.log_history, resumed.elapsed) == (
        2,
        progress.queue,
        [{"step": 1}, {"step": 2}],
        3.0,
    )
    assert resumed.moments == progress.moments and resumed.moments.count == pytest.approx(6)
    assert resumed.kl == progress.kl and resumed.kl.value != cfg.kl_coef
    for name in ("order_rng", "shuffle_rng"):
        assert torch.equal(getattr(resumed, name).get_state(), getattr(progress, name).get_state())
    assert optimizer2.state_dict()["state"][0]["step"] == 2
    torch.testing.assert_close(
        optimizer2.state_dict()["state"][0]["exp_avg"],
        optimizer.state_dict()["state"][0]["exp_avg"],
        rtol=0,
        atol=0,
    )
    assert (scheduler2.last_epoch, scheduler2.get_last_lr()) == (2, scheduler.get_last_lr())
    assert torch.equal(model2.weight, model.weight)

    (tmp_path / "checkpoint-9").mkdir()  # e.g. another stage's directory: a one-line error, not a traceback
    with pytest.raises(UserError, match="checkpoint-9 is not a PPO checkpoint"):
        load_checkpoint(accelerator, str(tmp_path / "checkpoint-9"))


def _fixed_rollout(policy_dir: str, batch: int = 8):
    """A rollout with varied response lengths, so token-count normalisation matters."""
    from alignment.ppo_step import RolloutBatch

    gen = torch.Generator().manual_seed(0)
    queries = torch.randint(3, 200, (batch, 5), generator=gen)
    query_mask = torch.ones_like(queries)
    query_mask[::3, :2] = 0  # some left padding
    responses = torch.randint(3, 200, (batch, 7), generator=gen)
    lengths = torch.tensor([7, 1, 3, 5, 2, 7, 4, 6])
    mask = (torch.arange(7)[None] < lengths[:, None]).float()
    return RolloutBatch(
        queries,
        query_mask,
        responses,
        mask,
        logprobs=-torch.rand(batch, 7, generator=gen) * 3 - 3,
        values=torch.randn(batch, 7, generator=gen) * 0.1,
        advantages=torch.randn(batch, 7, generator=gen) * mask,
        returns=torch.randn(batch, 7, generator=gen) * mask,
    )


def _one_update(policy_dir: str, rollout, tmp_path: Path, per_device: int, accumulation: int):
    from accelerate import Accelerator

    from alignment.ppo import build_actor_critic

    _reset_accelerate()
    cfg = tiny_config(
        policy_dir,
        tmp_path,
        per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation,
        num_ppo_epochs=1,
        max_grad_norm=1e9,
    )
    accelerator = Accelerator(gradient_accumulation_steps=accumulation)
    torch.manual_seed(0)
    model, _ = build_actor_critic(cfg, accelerator)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # new = old - grad: compares gradients directly
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    stats = ppo_update(
        accelerator, model, optimizer, scheduler, rollout, cfg, torch.Generator().manual_seed(1)
    )
    return {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}, stats


def test_batch_1_times_accumulation_8_equals_batch_8(tiny_policy_dir, tmp_path):
    rollout = _fixed_rollout(tiny_policy_dir)
    small, small_stats = _one_update(tiny_policy_dir, rollout, tmp_path, per_device=1, accumulation=8)
    large, large_stats = _one_update(
        tiny_policy_dir, copy.deepcopy(rollout), tmp_path, per_device=8, accumulation=1
    )
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
    with pytest.raises(ConfigError, match="save_total_limit >= 1"):
        load_config(PPORecipeConfig, None, {"save_total_limit": 0})
    with pytest.raises(UserError, match="no_such_module"):
        load_reward_funcs(load_config(PPORecipeConfig, None, {"reward_funcs": ["no_such_module:fn"]}))


def test_missing_policy_and_empty_dataset_are_one_line_errors(db, tiny_policy_dir, toy_db, tmp_path):
    with pytest.raises(UserError, match="model_name_or_path"):
        train(tiny_config(str(tmp_path / "nope"), tmp_path / "out"), db, reward_funcs=[RecordingReward()])
    with pytest.raises(UserError, match="no 'toy' tasks in split"):
        train(
            tiny_config(tiny_policy_dir, tmp_path / "out", tasks={"dataset": "toy", "splits": ["test"]}),
            db,
            reward_funcs=[RecordingReward()],
        )


TOY_REWARD_MODULE = """\
def has_return(prompts, completions, **columns):
    assert "tests" in columns and "entry_point" in columns
    return [1.0 if "return" in c else 0.0 for c in completions]
"""


@pytest.mark.distributed
def test_zero3_two_cpu_processes_through_the_cli(db, tiny_policy_dir, toy_db, tmp_path):
    (tmp_path / "toy_reward_ppo.py").write_text(TOY_REWARD_MODULE)
    config = tmp_path / "ppo.yaml"
    out = tmp_path / "out"
    config.write_text(
        f"model_name_or_path: {tiny_policy_dir}\noutput_dir: {out}\ntasks: {{dataset: toy, splits: [pool]}}\n"
        "reward_funcs: ['toy_reward_ppo:has_return']\n"
    )
    env = {
        **os.environ,
        "CODEALIGN_DB_URL": toy_db,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
        "OMP_NUM_THREADS": "1",
    }

    def launch(max_steps: int) -> str:
        cmd = [
            sys.executable,
            "-m",
            "alignment.cli",
            "train",
            "ppo",
            "--config",
            str(config),
            "max_completion_length=8",
            "per_device_train_batch_size=2",
            "gradient_accumulation_steps=2",
            f"max_steps={max_steps}",
            "save_steps=1",
            "num_ppo_epochs=1",
            "learning_rate=1e-2",
            "--accelerate",
            str(REPO / "configs" / "accelerate" / "zero3_cpu.yaml"),
            "--num-processes",
            "2",
        ]
        proc = subprocess.run(
            cmd, check=False, env=env, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    launch(max_steps=2)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert history[-1]["episodes"] == 2 * 2 * 2 * 2  # steps x processes x per-device batch x accumulation
    before, after = _weights(tiny_policy_dir), _weights(str(out))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # a longer run in the same output_dir continues from the ZeRO-3 checkpoint (sharded weights + optimizer)
    assert "resuming from" in launch(max_steps=3)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [row["step"] for row in history] == [1, 2, 3]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    from sqlalchemy import select

    from db.models import Policy
    from db.session import session_scope

    with session_scope(toy_db) as session:  # rank 0 registered the run and the policy, once
        policies = session.scalars(select(Policy).where(Policy.stage == "ppo")).all()
        assert [p.checkpoint_path for p in policies] == [str(out)]
