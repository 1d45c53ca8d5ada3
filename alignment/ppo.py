"""PPO with a critic: sample code for RL prompts, score it with the reward functions, optimise the policy.

Reads top to bottom: config -> load (tasks, tokenizer, reward functions) -> build (accelerator, actor-critic,
frozen reference, optimizer) -> train (rollout, then PPO epochs over minibatches) -> save. A step's rollout and
update are :mod:`alignment.ppo_step`, their math :mod:`alignment.ppo_core`; actor and critic are one module
(:mod:`alignment.value_model`); ``checkpoint-N`` directories every ``save_steps`` rollouts, and resuming from
them, in :mod:`alignment.ppo_checkpoint`.

Examples::

    codealign train ppo --config configs/ppo.yaml
    codealign train ppo --config configs/ppo.yaml model_name_or_path=runs/sft max_steps=50
    codealign train ppo --config configs/ppo.yaml --accelerate configs/accelerate/zero3.yaml --num-processes 8

One training step = one rollout of ``rollout_batch_size`` responses per process (``per_device_train_batch_size x
gradient_accumulation_steps x num_mini_batches``), then ``num_ppo_epochs`` passes over it in ``num_mini_batches``
optimizer steps. The InstructGPT recipe with the details of Huang et al. 2024: per-token KL penalty in the
reward (fixed or adaptive coefficient), the score on the EOS token, a penalty for answers truncated before EOS,
running score normalisation, GAE, whitened advantages, clipped surrogate and value losses, logits divided by
the sampling temperature, dropout off, early stop of the epochs when the policy moves too far (approx. KL).

Rewards are the TRL-style callables GRPO uses, ``fn(prompts, completions, completion_ids, **columns)``, with
the task's ``tests``, ``entry_point`` and ``task_id`` as columns; several are combined with ``reward_weights``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from alignment.grpo import PromptSelection
from alignment.ppo_step import RewardFunc, collect_rollout, load_reward_funcs, ppo_update
from alignment.recipe import RecipeConfig
from alignment.runs import TrainOutcome
from alignment.tracking import trainer_report_to
from codealign.config import ConfigError, field_default, to_dict
from codealign.errors import UserError

# RecipeConfig fields PPO has no use for (a value other than the default is refused, not ignored).
_NOT_USED = {
    "num_train_epochs": "PPO counts rollouts (max_steps), not epochs over a dataset",
    "warmup_steps": "the PPO schedule has no warm-up",
    "save_strategy": "PPO saves every save_steps rollouts",
    "bf16": "PPO trains in the checkpoint's dtype",
    "gradient_checkpointing": "PPO does not checkpoint activations",
    "trl_extra": "PPO is not a TRL trainer",
}


@dataclass
class PPORecipeConfig(RecipeConfig):
    """The shared stage fields (:class:`~alignment.recipe.RecipeConfig`: ``model_name_or_path``, ``output_dir``
    (the final policy is a plain HF directory there, the critic in ``critic/``), ``policy_name``, ``seed``,
    ``resume``, ``lora``, ...) and PPO's own below."""

    # --- model
    critic_backbone: Literal["shared", "separate"] = (
        "separate"  # value head on the policy's trunk, or its own
    )
    critic_model_name_or_path: str | None = None  # separate critic's starting weights (default: the policy's)
    value_head_init_std: float = 0.0
    # --- data: RL prompts (with tests, no reference) from the pool split
    tasks: PromptSelection = field(default_factory=PromptSelection)
    # --- reward: as GRPO's (alignment.grpo.resolve_reward): execution, static, combined, reward_model,
    # or package.module:function
    reward_funcs: list[str] = field(default_factory=lambda: ["execution"])
    reward_weights: list[float] | None = None  # default: 1.0 each
    reward_model_path: str | None = None  # needed by the reward_model reward (optional for combined)
    reward_config: str | None = (
        None  # reward.rewards.RewardFunctionConfig YAML (shaping, timeouts); None = defaults
    )
    missing_eos_penalty: float | None = (
        1.0  # subtracted from the normalised score of answers cut off unfinished
    )
    normalize_scores: bool = True  # running mean/std over all scores seen so far
    whiten_rewards: bool = False
    # --- sampling
    max_completion_length: int = 128
    temperature: float = 1.0
    num_generations: int = 1  # responses per prompt in a rollout (consecutive rows of the rollout)
    # --- batch shape (per process): rollout = per_device_train_batch_size * gradient_accumulation_steps * minibatches
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_mini_batches: int = 1
    forward_batch_size: int = 16  # rollout-time forward passes (no grad)
    generation_batch_size: int = 64  # sequences per generate call
    max_steps: int = 100  # rollouts
    num_ppo_epochs: int = 4
    # --- optimisation
    learning_rate: float = 1e-5
    critic_learning_rate: float | None = None  # default: learning_rate
    lr_scheduler_type: Literal["constant", "linear"] = "linear"
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    # --- KL
    kl_coef: float = 0.05
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"
    adaptive_kl_target: float | None = None  # per-sequence KL to track; None = fixed kl_coef
    adaptive_kl_horizon: int = 10000
    early_stop_kl: float | None = None  # stop this rollout's epochs when approx KL(old || new) exceeds it
    # --- LoRA (lora, shared): the reference is the policy with its adapters off, so no second model is loaded
    # --- bookkeeping (report_to: accelerate trackers, e.g. tensorboard; mlflow through alignment.tracking)
    logging_steps: int = 1
    # --- checkpoints (Hugging Face Trainer's names): output_dir/checkpoint-<step>, see alignment.ppo_checkpoint
    save_steps: int | None = 0  # every this many rollouts and at the last; 0 or None = only the final policy

    def __post_init__(self) -> None:
        super().__post_init__()
        defaults = {f.name: f for f in dataclasses.fields(RecipeConfig)}
        for name, why in _NOT_USED.items():
            if getattr(self, name) != field_default(defaults[name]):
                raise ConfigError(f"{name}: not used by PPO ({why})")
        if self.num_generations < 1 or self.rollout_batch_size % self.num_generations:
            raise ConfigError(
                f"num_generations={self.num_generations} must divide the rollout batch "
                f"per_device_train_batch_size x gradient_accumulation_steps x num_mini_batches = "
                f"{self.rollout_batch_size}"
            )
        if self.reward_weights is not None and len(self.reward_weights) != len(self.reward_funcs):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} entries but reward_funcs has {len(self.reward_funcs)}"
            )
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "num_mini_batches",
            "forward_batch_size",
            "generation_batch_size",
            "max_steps",
            "num_ppo_epochs",
            "max_completion_length",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if (self.save_steps or 0) < 0 or (self.save_total_limit is not None and self.save_total_limit < 1):
            raise ConfigError(
                f"save_steps must be >= 0 and save_total_limit >= 1 or null, got "
                f"{self.save_steps} and {self.save_total_limit}"
            )
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ConfigError(f"gamma and lam must be in [0, 1], got gamma={self.gamma} lam={self.lam}")

    @property
    def rollout_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.num_mini_batches


# ----------------------------------------------------------------------------------------------- build
def build_actor_critic(cfg: PPORecipeConfig, accelerator):
    """Policy (+ LoRA), critic, and the frozen reference (``None`` with LoRA: adapters off = reference)."""
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.utils import logging as transformers_logging
    from trl.trainer.utils import disable_dropout_in_model

    from alignment.recipe import peft_config
    from alignment.value_model import ActorCritic

    def load_policy():
        return AutoModelForCausalLM.from_pretrained(cfg.model_name_or_path)

    policy = load_policy()
    critic = None
    if cfg.critic_backbone == "separate":
        verbosity = transformers_logging.get_verbosity()
        transformers_logging.set_verbosity_error()  # the unused lm_head of a causal-LM checkpoint is expected
        critic = AutoModel.from_pretrained(cfg.critic_model_name_or_path or cfg.model_name_or_path)
        transformers_logging.set_verbosity(verbosity)
    reference = None if cfg.lora.enabled else load_policy().eval().requires_grad_(False)
    if cfg.lora.enabled:
        from peft import get_peft_model

        policy = get_peft_model(policy, peft_config(cfg))
        if critic is not None:
            critic = get_peft_model(critic, peft_config(cfg, task_type="FEATURE_EXTRACTION"))
    model = ActorCritic(policy, critic, init_std=cfg.value_head_init_std)
    # Dropout would make the log-probs of the update differ from those of the rollout for the same weights.
    for module in (model, reference):
        if module is not None:
            disable_dropout_in_model(module)
    return model, reference


def build_optimizer(cfg: PPORecipeConfig, model, total_updates: int):
    import torch
    from transformers import get_scheduler

    groups = [
        {"params": model.policy_parameters(), "lr": cfg.learning_rate},
        {"params": model.critic_parameters(), "lr": cfg.critic_learning_rate or cfg.learning_rate},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_scheduler(
        cfg.lr_scheduler_type, optimizer, num_warmup_steps=0, num_training_steps=total_updates
    )
    return optimizer, scheduler


def make_accelerator(cfg: PPORecipeConfig):
    import os

    import torch
    from accelerate import Accelerator, PartialState

    if (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        and "LOCAL_RANK" in os.environ
        and not torch.cuda.is_available()
    ):
        # DeepSpeed on CPU (CI): accelerate leaves the backend unset and then counts a single process.
        PartialState(backend="gloo")
    trackers = [t for t in trainer_report_to(cfg.report_to) if t != "none"]  # mlflow: alignment.tracking
    return Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        log_with=trackers or None,
        project_dir=cfg.output_dir,
    )


def configure_deepspeed(cfg: PPORecipeConfig, accelerator) -> None:
    """Fill the DeepSpeed keys accelerate cannot infer without a dataloader."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = cfg.per_device_train_batch_size
    ds["gradient_accumulation_steps"] = cfg.gradient_accumulation_steps
    ds["train_batch_size"] = (
        cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * accelerator.num_processes
    )
    ds["gradient_clipping"] = cfg.max_grad_norm


# ------------------------------------------------------------------------------------------------ train
def train(cfg: PPORecipeConfig, db, reward_funcs: list[RewardFunc] | None = None) -> TrainOutcome:
    """Run PPO from ``cfg``; ``reward_funcs`` (callables) replaces ``cfg.reward_funcs`` for in-process callers.

    With ``resume`` and a ``checkpoint-N`` in ``output_dir`` (see :mod:`alignment.ppo_checkpoint`), the run
    continues at step N+1 and its ``TrainingRun`` row is reused.
    """
    import torch
    from accelerate.utils import set_seed

    from alignment import ppo_checkpoint as ckpt
    from alignment.recipe import check_common, load_tokenizer
    from alignment.runs import registered_run
    from alignment.value_model import save_actor_critic
    from db.tasks import load_tasks

    # 1. parse
    check_common(cfg)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed, device_specific=True)  # different samples on every process, reproducible per process
    output_dir = Path(cfg.output_dir)

    # 2. load
    tasks = load_tasks(cfg.tasks, db)
    funcs = reward_funcs if reward_funcs is not None else load_reward_funcs(cfg)
    weights = cfg.reward_weights or [1.0] * len(funcs)
    tokenizer = load_tokenizer(cfg.model_name_or_path)  # refuses a tokenizer without EOS
    if any(t.chat for t in tasks):
        from alignment.tokenization import check_chat_checkpoint

        check_chat_checkpoint(tokenizer, cfg.model_name_or_path)

    with registered_run("ppo", cfg, db) as run:
        # 3. build
        configure_deepspeed(cfg, accelerator)
        model, reference = build_actor_critic(cfg, accelerator)
        optimizer, scheduler = build_optimizer(
            cfg, model, cfg.max_steps * cfg.num_ppo_epochs * cfg.num_mini_batches
        )
        # The scheduler stays outside prepare(): accelerate would step it once per process.
        model, optimizer = accelerator.prepare(model, optimizer)
        if reference is not None and accelerator.state.deepspeed_plugin is not None:
            from trl.models.utils import prepare_deepspeed

            reference = prepare_deepspeed(reference, accelerator)
        elif reference is not None:
            reference = reference.to(accelerator.device)
        progress = ckpt.new_progress(cfg)
        accelerator.register_for_checkpointing(scheduler, progress)
        if run.resume_from:
            ckpt.load_checkpoint(accelerator, run.resume_from)
            if accelerator.is_main_process:
                print(f"ppo: resuming from {run.resume_from} (step {progress.step})", flush=True)
        if accelerator.log_with:
            accelerator.init_trackers("ppo", config={k: str(v) for k, v in to_dict(cfg).items()})

        # 4. train
        prompts_per_rollout = cfg.rollout_batch_size // cfg.num_generations
        global_prompts = prompts_per_rollout * accelerator.num_processes
        completions_per_step = global_prompts * cfg.num_generations
        started = time.time() - progress.elapsed
        stats = (
            {k: v for k, v in progress.log_history[-1].items() if k != "step"} if progress.log_history else {}
        )
        for step in range(progress.step + 1, cfg.max_steps + 1):
            while len(progress.queue) < global_prompts:
                progress.queue += torch.randperm(len(tasks), generator=progress.order_rng).tolist()
            chosen, progress.queue = progress.queue[:global_prompts], progress.queue[global_prompts:]
            mine = chosen[accelerator.process_index * prompts_per_rollout :][:prompts_per_rollout]
            batch_tasks = [tasks[i] for i in mine for _ in range(cfg.num_generations)]

            t0 = time.time()
            model.eval()
            sample_seed = cfg.seed + 1_000_003 * step + 7919 * accelerator.process_index
            rollout, stats, _ = collect_rollout(
                model,
                reference,
                accelerator,
                tokenizer,
                batch_tasks,
                funcs,
                weights,
                cfg,
                progress,
                sample_seed,
            )
            t1 = time.time()
            stats |= ppo_update(accelerator, model, optimizer, scheduler, rollout, cfg, progress.shuffle_rng)
            # episodes is TRL's name; num_completions is the name the report reads for every RL stage
            stats |= {
                "time/rollout_s": t1 - t0,
                "time/update_s": time.time() - t1,
                "episodes": step * completions_per_step,
                "num_completions": step * completions_per_step,
            }
            progress.step, progress.elapsed = step, time.time() - started
            if step % cfg.logging_steps == 0 or step == cfg.max_steps:
                progress.log_history.append({"step": step, **{k: round(v, 6) for k, v in stats.items()}})
                accelerator.log(stats, step=step)
                if run.tracker is not None:
                    run.tracker.log_metrics(stats, step=step)
                if accelerator.is_main_process:
                    ckpt.write_trainer_state(output_dir, progress.log_history, step, progress.elapsed)
                    print(
                        f"ppo step {step}/{cfg.max_steps} score {stats['objective/scores']:.3f} "
                        f"kl {stats['objective/kl']:.3f} finished {stats['finished_rate']:.2f} "
                        f"vf_loss {stats['loss/value']:.4f} clipfrac {stats['policy/clipfrac']:.3f}",
                        flush=True,
                    )
            if not all(math.isfinite(v) for k, v in stats.items() if k.startswith(("loss/", "objective/kl"))):
                raise UserError(f"PPO diverged at step {step} (non-finite loss or KL): lower learning_rate")
            if ckpt.should_save(step, cfg.save_steps, cfg.max_steps):
                ckpt.save_checkpoint(accelerator, output_dir, progress, cfg.save_total_limit)

        # 5. save
        accelerator.wait_for_everyone()
        full_state = accelerator.get_state_dict(model)  # gathers ZeRO-3 shards on the main process
        if accelerator.is_main_process:
            save_actor_critic(accelerator.unwrap_model(model), full_state, output_dir, cfg.model_name_or_path)
            tokenizer.save_pretrained(output_dir)
        accelerator.wait_for_everyone()
        accelerator.end_training()
        metrics = {
            **stats,
            "global_step": progress.step,
            "train_runtime": round(time.time() - started, 2),
            "num_completions": progress.step * completions_per_step,
            "num_prompts": len(tasks),
            "reward_funcs": cfg.reward_funcs,
            "log_history": progress.log_history,
        }
        return run.complete(metrics)
