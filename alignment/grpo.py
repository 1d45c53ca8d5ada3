"""GRPO: TRL ``GRPOTrainer`` with execution, static and reward-model rewards, weighted from the config.

Examples::

    codealign train grpo --config configs/grpo.yaml model_name_or_path=runs/sft output_dir=runs/grpo
    codealign train grpo --config configs/grpo.yaml reward_funcs=[execution,static,reward_model] \\
        reward_weights=[1.0,0.2,0.5] reward_model_path=runs/reward
    codealign train grpo --config configs/grpo.yaml reward_funcs=[mypkg.rewards:brevity]   # your own callable

Prompts come from the ``pool`` split by default (prompts + tests, no reference: docs/pipeline.md: RL prompts
must come from where the policy is weak). The dataset keeps ``tests``, ``entry_point`` and ``task_id``
columns, which TRL hands to every reward function as keyword arguments — that is how the execution reward
knows what to run.

Reward names (``reward_funcs``), each a TRL reward function logged under its own name:

* ``execution`` / ``static``: the reward engine's shaped execution reward and static-analysis score
  (``reward.rewards``), built with unit weights so that ``reward_weights`` is the one place weights live;
* ``reward_model``: a :class:`alignment.reward_model.RewardModelScorer` on ``reward_model_path``;
* ``combined``: the reward engine's single combined reward, weighted by its own config (``reward_config``;
  with ``reward_model_path`` set, the reward model joins with its ``learned_weight``);
* ``package.module:function``: any callable ``fn(prompts, completions, **columns) -> list[float | None]``.

``reward_config`` is a ``reward.rewards.RewardFunctionConfig`` YAML (shaping, sandbox limits; e.g.
``configs/reward_weights.yaml``); unset = its defaults.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from alignment.recipe import (
    RecipeConfig,
    check_common,
    load_tokenizer,
    peft_config,
    save_final,
    train_metrics,
    trainer_args,
)
from alignment.runs import TrainOutcome, registered_run
from alignment.tokenization import check_chat_checkpoint
from codealign.config import ConfigError
from codealign.errors import UserError
from codealign.tasks.chat import is_conversation
from db.tasks import TaskSelection, load_tasks

ENGINE_REWARDS = ("execution", "static", "combined")


@dataclass
class PromptSelection(TaskSelection):
    """The GRPO prompts: as TaskSelection, but a YAML that sets only ``tasks.dataset`` still gets ``pool``."""

    splits: list[str] = field(default_factory=lambda: ["pool"])


@dataclass
class GRPORecipeConfig(RecipeConfig):
    learning_rate: float = 1e-4
    per_device_train_batch_size: int = 16
    num_generations: int = 8  # completions per prompt; the effective batch must divide by it
    max_completion_length: int = 128
    temperature: float = 1.0
    beta: float = 0.0  # KL to a reference model; 0 = no reference model (TRL default)
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    reward_funcs: list[str] = field(default_factory=lambda: ["execution", "static"])
    reward_weights: list[float] | None = None  # one per reward_funcs entry; None = all 1.0
    reward_model_path: str | None = None  # needed by the reward_model reward (optional for combined)
    reward_config: str | None = (
        None  # reward.rewards.RewardFunctionConfig YAML (shaping, timeouts); None = defaults
    )
    tasks: PromptSelection = field(default_factory=PromptSelection)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ConfigError(
                f"reward_weights: {len(self.reward_weights)} weights for {len(self.reward_funcs)} reward_funcs"
            )
        if not self.reward_funcs:
            raise ConfigError(
                "reward_funcs: name at least one reward (execution, static, combined, reward_model)"
            )


def engine_reward(name: str, cfg: GRPORecipeConfig) -> Callable:
    from dataclasses import replace

    from codealign.config import load_config
    from reward.rewards import RewardFunctionConfig, execution_reward, make_combined_reward, static_reward

    reward_cfg = load_config(RewardFunctionConfig, cfg.reward_config)
    if name == "combined":
        scorer = reward_model_scorer(cfg) if cfg.reward_model_path else None
        return make_combined_reward(reward_cfg, scorer=scorer)
    unit = replace(reward_cfg, execution_weight=1.0, static_weight=1.0)  # weights: reward_weights
    return execution_reward(unit) if name == "execution" else static_reward(unit)


def reward_model_scorer(cfg: GRPORecipeConfig):
    from alignment.reward_model import RewardModelScorer

    return RewardModelScorer(cfg.reward_model_path)


def resolve_reward(name: str, cfg: GRPORecipeConfig) -> Callable:
    """The callable behind one ``reward_funcs`` entry; a one-line error naming the entry otherwise."""
    if name in ENGINE_REWARDS:
        return engine_reward(name, cfg)
    if name == "reward_model":
        if not cfg.reward_model_path:
            raise UserError("reward_funcs has reward_model but reward_model_path is not set")
        return reward_model_scorer(cfg).reward_function()
    if ":" not in name:
        raise UserError(
            f"reward_funcs: unknown reward {name!r} (use {', '.join([*ENGINE_REWARDS, 'reward_model'])} "
            "or package.module:function)"
        )
    module_name, attr = name.split(":", 1)
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"reward_funcs: cannot load {name!r} ({exc})") from None
    if not callable(fn):
        raise UserError(f"reward_funcs: {name} is not callable")
    return fn


def build_dataset(cfg: GRPORecipeConfig, db):
    from datasets import Dataset

    specs = load_tasks(cfg.tasks, db)
    if len({t.chat for t in specs}) > 1:
        raise UserError(
            "tasks: GRPO needs one task format, but the selection mixes chat and completion tasks"
        )
    # A chat task's prompt is its conversation: TRL applies the chat template and hands the rewards messages.
    return Dataset.from_list(
        [
            {
                "prompt": t.model_prompt,
                "tests": list(t.tests),
                "entry_point": t.entry_point,
                "task_id": t.task_id,
            }
            for t in specs
        ]
    )


def completions_sampled(global_step: int, args) -> int:
    """Completions TRL's ``GRPOTrainer`` generated (all processes) in ``global_step`` optimizer steps.

    TRL 1.16 generates ``generation_batch_size`` completions at the first of every ``steps_per_generation x
    num_iterations`` micro-batches, and one optimizer step is ``gradient_accumulation_steps`` micro-batches; with
    the defaults that is ``per_device_train_batch_size x gradient_accumulation_steps x world_size`` per step.
    """
    micro_batches = global_step * args.gradient_accumulation_steps
    every = args.steps_per_generation * args.num_iterations
    return -(-micro_batches // every) * args.generation_batch_size


def train(cfg: GRPORecipeConfig, db) -> TrainOutcome:
    from trl import GRPOConfig, GRPOTrainer

    check_common(cfg)
    dataset = build_dataset(cfg, db)
    reward_funcs = [resolve_reward(name, cfg) for name in cfg.reward_funcs]
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    tokenizer.padding_side = "left"  # generation pads on the left
    if len(dataset) and is_conversation(dataset[0]["prompt"]):
        check_chat_checkpoint(tokenizer, cfg.model_name_or_path)
    args = trainer_args(cfg, GRPOConfig)
    with registered_run("grpo", cfg, db) as run:
        trainer = GRPOTrainer(
            model=cfg.model_name_or_path,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config(cfg),
            callbacks=run.callbacks(),
        )
        result = trainer.train(resume_from_checkpoint=run.resume_from)
        save_final(trainer, cfg, tokenizer)
        metrics = {
            **train_metrics(result, trainer),
            "num_prompts": len(dataset),
            "reward_funcs": cfg.reward_funcs,
            "num_completions": completions_sampled(result.global_step, trainer.args),
        }
        # the report plots reward against the sample budget, for GRPO and PPO alike
        for entry in metrics["log_history"]:
            if "step" in entry:
                entry["num_completions"] = completions_sampled(entry["step"], trainer.args)
        return run.complete(metrics)
