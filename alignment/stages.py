"""The training stages: one table from stage name to recipe module and config class.

Stage protocol (every stage, PPO included, follows it; a new stage is one line in ``STAGES``):

* a module ``alignment.<stage>`` exports one config dataclass, a subclass of
  :class:`alignment.recipe.RecipeConfig` (so it has ``model_name_or_path``, ``output_dir``, ``policy_name``,
  ``policy_stage``, ``resume``, ``lora``, ``trl_extra`` and the shared optimisation fields), and
  ``train(cfg, db) -> alignment.runs.TrainOutcome``;
* config fields reuse TRL's names and reach TRL through :func:`codealign.config.trl_kwargs`;
* ``train`` checks its input first (:func:`alignment.recipe.check_common`: nothing is registered for a config
  that cannot run), wraps its work in ``alignment.runs.registered_run(stage, cfg, db)`` (TrainingRun row,
  Policy with parent, resume from the last ``checkpoint-N``; rank 0 writes the DB) and ends with
  ``run.complete(metrics)``;
* bad input raises :class:`codealign.errors.UserError` (one line, exit code 2);
* ``train`` works in-process (the quickstart calls it) and under ``accelerate launch``
  (``codealign train --accelerate``: :mod:`alignment.launcher`, :mod:`alignment.commands.train_entry`).
"""

from __future__ import annotations

import importlib
from typing import Any

from codealign.errors import UserError

# stage -> (module, config dataclass). The module is imported only when its stage runs.
STAGES: dict[str, tuple[str, str]] = {
    "sft": ("alignment.sft", "SFTRecipeConfig"),
    "reward_model": ("alignment.reward_model", "RewardModelRecipeConfig"),
    "dpo": ("alignment.dpo", "DPORecipeConfig"),
    "grpo": ("alignment.grpo", "GRPORecipeConfig"),
    "ppo": ("alignment.ppo", "PPORecipeConfig"),
}
# Names kept for what they were called before: `train reward` trains the reward model.
ALIASES = {"reward": "reward_model"}


def stage_name(stage: str) -> str:
    """The stage ``stage`` names (an alias resolved); a one-line error for an unknown one."""
    stage = ALIASES.get(stage, stage)
    if stage not in STAGES:
        raise UserError(f"train: unknown stage '{stage}' (choose from {', '.join(sorted(STAGES))})")
    return stage


def stage_config_class(stage: str) -> type:
    module_name, class_name = STAGES[stage_name(stage)]
    return getattr(importlib.import_module(module_name), class_name)


def resolve_config(stage: str, config_path: Any, overrides: list[str] | dict[str, Any]) -> Any:
    from codealign.config import load_config

    return load_config(stage_config_class(stage), config_path, overrides)


def train_stage(stage: str, cfg: Any, db):
    """Run one stage in this process; returns its ``TrainOutcome``."""
    return importlib.import_module(STAGES[stage_name(stage)][0]).train(cfg, db)
