"""Tiny runs of every stage on a zoo model (tests/zoo.py), shared by the zoo and chat-task tests.

Each runner trains from ``model_dir`` into ``out`` on the DB of the ``zoo_db`` fixture (tests/conftest.py): the tiny
dataset as suite ``zoo`` (completion format) and ``zoochat`` (the same tasks as conversations), with scored
completions so reward-model and DPO pairs exist. ``chat=True`` trains on ``zoochat``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _train_helpers import TINY_RUN

from codealign.config import load_config


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """PPO builds its own Accelerator; accelerate keeps process-wide singletons."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


TASKS = {"dataset": "zoo", "splits": ["train"], "load_from": "db"}
# PPO defaults to chat tasks: it cuts a code answer at its first dedent, which a random model reaches at once
# on nearly every prompt (every score equal: no advantage, no update); a chat answer runs to a stop token.
CHAT_TASKS = {**TASKS, "dataset": "zoochat"}


def _tasks(chat: bool) -> dict:
    return CHAT_TASKS if chat else TASKS


def _common(model_dir: Path, out: Path) -> dict:
    return {"model_name_or_path": str(model_dir), "output_dir": str(out), "learning_rate": 1e-2}


def sft(model_dir, out, db, chat=False, **extra):
    from alignment.sft import SFTRecipeConfig, train

    return train(
        load_config(
            SFTRecipeConfig, None, {**TINY_RUN, **_common(model_dir, out), "tasks": _tasks(chat), **extra}
        ),
        db,
    )


def reward_model(model_dir, out, db, chat=False, **extra):
    from alignment.reward_model import RewardModelRecipeConfig, train

    fields = {
        **TINY_RUN,
        **_common(model_dir, out),
        "eval_fraction": 0.0,
        "pairs": {"dataset": _tasks(chat)["dataset"]},
    }
    return train(load_config(RewardModelRecipeConfig, None, {**fields, **extra}), db)


def dpo(model_dir, out, db, chat=False, **extra):
    from alignment.dpo import DPORecipeConfig, train

    fields = {
        **TINY_RUN,
        **_common(model_dir, out),
        "pairs": {"dataset": _tasks(chat)["dataset"]},
        "precompute_ref_log_probs": True,
    }
    return train(load_config(DPORecipeConfig, None, {**fields, **extra}), db)


def grpo(model_dir, out, db, chat=False, **extra):
    from alignment.grpo import GRPORecipeConfig, train

    run = {k: v for k, v in TINY_RUN.items() if k != "max_length"}
    fields = {
        **run,
        **_common(model_dir, out),
        "num_generations": 4,
        "max_completion_length": 8,
        # a reward with variance for a random model (execution alone gives every sample the same score)
        "reward_funcs": ["execution", "_zoo_stages:length_reward"],
        "tasks": _tasks(chat),
    }
    return train(load_config(GRPORecipeConfig, None, {**fields, **extra}), db)


def ppo(model_dir, out, db, chat=True, **extra):
    from alignment.ppo import PPORecipeConfig, train

    fields = {
        **_common(model_dir, out),
        "tasks": _tasks(chat),
        "max_completion_length": 8,
        "per_device_train_batch_size": 4,
        "max_steps": 1,
        "num_ppo_epochs": 1,
        "learning_rate": 1e-3,
        "reward_funcs": ["execution", "_zoo_stages:length_reward"],
    }
    return train(load_config(PPORecipeConfig, None, {**fields, **extra}), db)


def length_reward(prompts, completions, **columns) -> list[float]:
    from codealign.tasks.chat import reply_text

    return [min(len(reply_text(c)), 40) / 40 for c in completions]


STAGES: dict[str, Callable] = {"sft": sft, "reward_model": reward_model, "dpo": dpo, "grpo": grpo, "ppo": ppo}
