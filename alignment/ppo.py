"""PPO with a critic: sample code for RL prompts, score it with the reward functions, optimise the policy.

Reads top to bottom: config -> load (tasks, tokenizer, reward functions) -> build (accelerator, actor-critic,
frozen reference, optimizer) -> train (rollout, then PPO epochs over minibatches) -> save. The math lives in
:mod:`alignment.ppo_core`; actor and critic are one module (:mod:`alignment.value_model`); ``checkpoint-N``
directories every ``save_steps`` rollouts, and resuming from them, in :mod:`alignment.ppo_checkpoint`.

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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignment.config import ConfigError, to_dict
from alignment.errors import UserError
from alignment.grpo import PromptSelection
from alignment.recipe import LoraSettings
from alignment.runs import TrainOutcome

RewardFunc = Callable[..., list]


@dataclass
class PPORecipeConfig:
    # --- model
    model_name_or_path: str = ""  # the policy to start from (usually the SFT checkpoint); required
    output_dir: str = ""  # required; the final policy is a plain HF directory here, the critic in critic/
    policy_name: str | None = None  # DB name of the resulting policy (default: output_dir's last component)
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
    reward_config: str | None = None  # reward.rewards.RewardConfig YAML (shaping, timeouts); None = defaults
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
    # --- LoRA (peft): the reference is the policy with its adapters off, so no second model is loaded
    lora: LoraSettings = field(default_factory=LoraSettings)
    # --- bookkeeping
    seed: int = 0
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=lambda: ["none"])  # accelerate trackers: tensorboard, mlflow
    # --- checkpoints (Hugging Face Trainer's names): output_dir/checkpoint-<step>, see alignment.ppo_checkpoint
    save_steps: int | None = 0  # every this many rollouts and at the last; 0 or None = only the final policy
    save_total_limit: int | None = 2  # newest checkpoints kept; None = all
    resume: bool = True  # continue from the last checkpoint-N in output_dir when there is one

    def __post_init__(self) -> None:
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


@dataclass
class Rollout:
    """One process's rollout; every tensor has ``B`` rows. ``Q`` prompt tokens (left-padded), ``R`` response."""

    queries: Any  # (B, Q) token ids
    query_mask: Any  # (B, Q)
    responses: Any  # (B, R) token ids, pad after the answer's end (EOS or end of the function body)
    response_mask: Any  # (B, R) float, 1 on the answer's tokens
    logprobs: Any  # (B, R) under the policy that sampled
    values: Any  # (B, R)
    advantages: Any  # (B, R) whitened
    returns: Any  # (B, R)


# ------------------------------------------------------------------------------------------------ load
def load_reward_funcs(cfg: PPORecipeConfig) -> list[RewardFunc]:
    """The callables behind ``reward_funcs``, resolved exactly as GRPO resolves them."""
    from alignment.grpo import resolve_reward

    return [resolve_reward(name, cfg) for name in cfg.reward_funcs]


def combined_scores(
    funcs: list[RewardFunc], weights: list[float], prompts: list[str], completions: list[str], **columns: Any
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted sum of the reward functions per completion (``None`` counts 0), and each function's values.

    Functions that report extra figures through TRL's ``log_metric(name, value)`` column (the engine's pass
    rate) add them to the returned dict as one-element lists.
    """
    total = [0.0] * len(completions)
    per_func: dict[str, list[float]] = {}

    def log_metric(name: str, value: float) -> None:
        per_func[f"rewards/{name}"] = [float(value)]

    for func, weight in zip(funcs, weights):
        values = func(prompts=prompts, completions=completions, log_metric=log_metric, **columns)
        if len(values) != len(completions):
            raise UserError(
                f"reward {func.__name__} returned {len(values)} values for {len(completions)} completions"
            )
        per_func[f"rewards/{func.__name__}"] = [float("nan") if v is None else float(v) for v in values]
        total = [t + weight * (float(v) if v is not None else 0.0) for t, v in zip(total, values)]
    return total, per_func


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
    trackers = [t for t in cfg.report_to if t != "none"]
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


# ---------------------------------------------------------------------------------------------- rollout
def trim_padding(queries, query_mask, responses, response_mask):
    """Drop the columns that are padding in every row (left of the prompts, right of the answers).

    Outputs at the kept positions are unchanged (padding is masked and positions skip it); compute shrinks to
    the longest prompt and answer of this batch instead of the whole rollout's.
    """
    first = int(query_mask.any(0).long().argmax())
    last = int(response_mask.any(0).nonzero().max()) + 1
    return queries[:, first:], query_mask[:, first:], responses[:, :last], response_mask[:, :last]


def forward_logprobs_values(model, queries, query_mask, responses, response_mask, temperature: float):
    """Policy log-probs, values and entropies ``(B, R)`` of the response tokens (0 where masked).

    Position ``t`` describes the state before response token ``t``: its value, the distribution that produced
    the token and that distribution's entropy (no gradient through the entropy: it is only logged).
    """
    import torch

    from alignment.ppo_core import entropy, token_logprobs
    from alignment.value_model import join_query_response

    width = responses.shape[1]
    queries, query_mask, responses, response_mask = trim_padding(
        queries, query_mask, responses, response_mask
    )
    logits, values = model(*join_query_response(queries, query_mask, responses, response_mask))
    start = queries.shape[1] - 1
    logits = logits[:, start:-1]
    with torch.no_grad():
        entropies = entropy(logits, temperature)
    outputs = (token_logprobs(logits, responses, temperature), values[:, start:-1].float(), entropies)
    return tuple(torch.nn.functional.pad(x * response_mask, (0, width - x.shape[1])) for x in outputs)


def reference_logprobs(reference, queries, query_mask, responses, response_mask, temperature: float):
    """Log-probs ``(B, R)`` of the response tokens under the frozen reference model (0 where masked)."""
    import torch

    from alignment.ppo_core import token_logprobs
    from alignment.value_model import join_query_response

    width = responses.shape[1]
    queries, query_mask, responses, response_mask = trim_padding(
        queries, query_mask, responses, response_mask
    )
    input_ids, attention_mask, position_ids = join_query_response(
        queries, query_mask, responses, response_mask
    )
    logits = reference(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).logits
    logprobs = token_logprobs(logits[:, queries.shape[1] - 1 : -1], responses, temperature) * response_mask
    return torch.nn.functional.pad(logprobs, (0, width - logprobs.shape[1]))


def sample_responses(model, accelerator, tokenizer, prompts: list[str], cfg: PPORecipeConfig, seed: int):
    """One sampled answer per prompt, cut like evaluation cuts it (EOS or end of the function body).

    Returns ``queries, query_mask (B, Q)`` (left-padded), ``responses, mask (B, R)`` (right-padded; R = the
    longest answer), ``finished (B,)`` (False when ``max_completion_length`` ran out) and the answer texts.
    """
    import torch
    from trl.models.utils import unwrap_model_for_generation

    from alignment.generation import generate_rollouts

    with unwrap_model_for_generation(model, accelerator) as unwrapped:
        policy = unwrapped.policy
        top_k = policy.generation_config.top_k
        policy.generation_config.top_k = (
            0  # the full distribution the log-probs describe (transformers' default: 50)
        )
        try:
            rollouts = [
                r[0]
                for r in generate_rollouts(
                    (policy, tokenizer),
                    prompts,
                    n=1,
                    temperature=cfg.temperature,
                    max_new_tokens=cfg.max_completion_length,
                    seed=seed,
                    batch_size=cfg.generation_batch_size,
                )
            ]
        finally:
            policy.generation_config.top_k = top_k
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    # An answer that dedents at once keeps no token; its EOS stands for "ended here" so it still gets a reward.
    token_ids = [r.token_ids or [tokenizer.eos_token_id] for r in rollouts]
    responses = torch.full((len(prompts), max(map(len, token_ids))), tokenizer.pad_token_id)
    mask = torch.zeros(responses.shape)
    for row, ids in enumerate(token_ids):
        responses[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1.0
    finished = torch.tensor([r.finished for r in rollouts])
    device = accelerator.device
    return (
        enc["input_ids"].to(device),
        enc["attention_mask"].to(device),
        responses.to(device),
        mask.to(device),
        finished.to(device),
        [r.text for r in rollouts],
    )


def collect_rollout(model, reference, accelerator, tokenizer, tasks, reward_funcs, weights, cfg, state, seed):
    """Sample, score, and turn scores into advantages. ``state`` (a ``PPOProgress``) carries the KL controller and
    the score moments."""
    import torch

    from alignment import ppo_core as core

    prompts = [t.prompt for t in tasks]
    queries, query_mask, responses, mask, ended, completions = sample_responses(
        model, accelerator, tokenizer, prompts, cfg, seed
    )
    columns = {
        "tests": [list(t.tests) for t in tasks],
        "entry_point": [t.entry_point for t in tasks],
        "task_id": [t.task_id for t in tasks],
    }
    raw, per_func = combined_scores(
        reward_funcs,
        weights,
        prompts,
        completions,
        completion_ids=[r[m.bool()].tolist() for r, m in zip(responses, mask)],
        **columns,
    )
    raw = torch.tensor(raw, device=accelerator.device)
    all_raw = accelerator.gather(raw)
    scores = raw
    if cfg.normalize_scores:
        state.moments.update(all_raw.cpu())
        scores = state.moments.normalize(raw)
    if cfg.missing_eos_penalty is not None:
        scores = scores - cfg.missing_eos_penalty * (~ended).float()

    logprobs, values, ref_logprobs, entropies = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(prompts), cfg.forward_batch_size):
            rows = slice(i, i + cfg.forward_batch_size)
            batch = (queries[rows], query_mask[rows], responses[rows], mask[rows])
            lp, v, ent = forward_logprobs_values(model, *batch, cfg.temperature)
            entropies.append(ent)
            if reference is None:  # LoRA: the reference is the policy with its adapters switched off
                with accelerator.unwrap_model(model).policy.disable_adapter():
                    ref_lp, _, _ = forward_logprobs_values(model, *batch, cfg.temperature)
            else:
                ref_lp = reference_logprobs(reference, *batch, cfg.temperature)
            logprobs.append(lp), values.append(v), ref_logprobs.append(ref_lp)
    logprobs, values, ref_logprobs = torch.cat(logprobs), torch.cat(values), torch.cat(ref_logprobs)

    kl = core.kl_per_token(logprobs, ref_logprobs, cfg.kl_estimator)
    rewards = core.token_rewards(scores, kl, mask, state.kl.value)
    if cfg.whiten_rewards:
        rewards = core.masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = core.gae(rewards, values, mask, cfg.gamma, cfg.lam)
    advantages = core.masked_whiten(advantages, mask)

    sequence_kl = accelerator.gather((kl * mask).sum(1)).mean().item()
    stats = {
        "objective/scores": all_raw.mean().item(),
        "objective/kl": sequence_kl,
        "objective/entropy": accelerator.gather(core.masked_mean(torch.cat(entropies), mask)[None])
        .mean()
        .item(),
        "objective/rlhf_reward": accelerator.gather(scores - state.kl.value * (kl * mask).sum(1))
        .mean()
        .item(),
        "finished_rate": accelerator.gather(ended.float()).mean().item(),
        "empty_rate": accelerator.gather(
            torch.tensor([float(not c.strip()) for c in completions], device=accelerator.device)
        )
        .mean()
        .item(),
        "response_length": accelerator.gather(mask.sum(1)).mean().item(),
        "value/explained_variance": core.explained_variance(values, returns, mask),
        "kl_coef": state.kl.value,
        **{
            name: accelerator.gather(torch.tensor(per_sample, device=accelerator.device)).nanmean().item()
            for name, per_sample in per_func.items()
        },
    }
    state.kl.update(sequence_kl, n_steps=all_raw.numel())
    rollout = Rollout(queries, query_mask, responses, mask, logprobs, values, advantages, returns)
    return rollout, stats, completions


# ----------------------------------------------------------------------------------------------- update
def ppo_update(accelerator, model, optimizer, scheduler, rollout: Rollout, cfg: PPORecipeConfig, generator):
    """``num_ppo_epochs`` passes over the rollout, one optimizer step per minibatch; returns the statistics.

    Each loss is a sum over tokens divided by the response tokens of the whole minibatch on all processes, so
    the gradient does not depend on how the minibatch is split into micro-batches or processes.
    """
    import torch

    from alignment import ppo_core as core

    batch = rollout.responses.shape[0]
    minibatch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
    # accelerate divides each micro-batch loss by the accumulation steps; DDP/DeepSpeed average processes.
    scale_numerator = cfg.gradient_accumulation_steps * accelerator.num_processes
    totals = {
        k: torch.zeros((), device=accelerator.device)
        for k in ("tokens", "pg_loss", "vf_loss", "clipped", "vf_clipped", "approx_kl", "ratio", "entropy")
    }
    epochs_done, stopped_early = 0, False
    model.train()
    for _epoch in range(cfg.num_ppo_epochs):
        order = torch.randperm(batch, generator=generator).to(accelerator.device)
        for start in range(0, batch, minibatch):
            rows = order[start : start + minibatch]
            tokens = accelerator.reduce(rollout.response_mask[rows].sum(), reduction="sum").clamp(min=1)
            kl_before = totals["approx_kl"].clone()
            for micro in rows.split(cfg.per_device_train_batch_size):
                with accelerator.accumulate(model):
                    mask = rollout.response_mask[micro]
                    logprobs, values, entropies = forward_logprobs_values(
                        model,
                        rollout.queries[micro],
                        rollout.query_mask[micro],
                        rollout.responses[micro],
                        mask,
                        cfg.temperature,
                    )
                    pg_sum, pg_stats = core.policy_loss(
                        logprobs, rollout.logprobs[micro], rollout.advantages[micro], mask, cfg.cliprange
                    )
                    vf_sum, vf_clipped = core.value_loss(
                        values, rollout.values[micro], rollout.returns[micro], mask, cfg.cliprange_value
                    )
                    loss = (pg_sum + cfg.vf_coef * vf_sum) * scale_numerator / tokens
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and accelerator.state.deepspeed_plugin is None:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                with torch.no_grad():
                    for key, value in (
                        ("tokens", mask.sum()),
                        ("pg_loss", pg_sum),
                        ("vf_loss", vf_sum),
                        ("clipped", pg_stats.clipped_tokens),
                        ("vf_clipped", vf_clipped),
                        ("approx_kl", pg_stats.approx_kl_sum),
                        ("ratio", pg_stats.ratio_sum),
                        ("entropy", core.masked_sum(entropies, mask)),
                    ):
                        totals[key] += value.detach()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            minibatch_kl = accelerator.reduce(totals["approx_kl"] - kl_before, reduction="sum") / tokens
            if cfg.early_stop_kl is not None and minibatch_kl.item() > cfg.early_stop_kl:
                stopped_early = True
                break
        epochs_done += 1
        if stopped_early:
            break
    summed = {k: accelerator.reduce(v, reduction="sum").item() for k, v in totals.items()}
    n = max(summed["tokens"], 1.0)
    return {
        "loss/policy": summed["pg_loss"] / n,
        "loss/value": summed["vf_loss"] / n,
        "policy/clipfrac": summed["clipped"] / n,
        "policy/approxkl": summed["approx_kl"] / n,
        "policy/ratio": summed["ratio"] / n,
        "policy/entropy": summed["entropy"] / n,
        "value/clipfrac": summed["vf_clipped"] / n,
        "ppo_epochs_done": epochs_done,
        "early_stopped": float(stopped_early),
        "lr": scheduler.get_last_lr()[0],
    }


# ------------------------------------------------------------------------------------------------ train
def train(cfg: PPORecipeConfig, reward_funcs: list[RewardFunc] | None = None) -> TrainOutcome:
    """Run PPO from ``cfg``; ``reward_funcs`` (callables) replaces ``cfg.reward_funcs`` for in-process callers.

    With ``resume`` and a ``checkpoint-N`` in ``output_dir`` (see :mod:`alignment.ppo_checkpoint`), the run
    continues at step N+1 and its ``TrainingRun`` row is reused.
    """
    import torch
    from accelerate.utils import set_seed

    from alignment import ppo_checkpoint as ckpt
    from alignment.recipe import check_common, load_tasks, load_tokenizer
    from alignment.runs import registered_run
    from alignment.value_model import save_actor_critic

    # 1. parse
    check_common(cfg)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed, device_specific=True)  # different samples on every process, reproducible per process
    output_dir = Path(cfg.output_dir)

    # 2. load
    tasks = load_tasks(cfg.tasks)
    funcs = reward_funcs if reward_funcs is not None else load_reward_funcs(cfg)
    weights = cfg.reward_weights or [1.0] * len(funcs)
    tokenizer = load_tokenizer(cfg.model_name_or_path)
    if tokenizer.eos_token_id is None:
        raise UserError(
            f"{cfg.model_name_or_path}: the tokenizer has no EOS token; PPO needs one to end answers"
        )

    with registered_run("ppo", cfg) as run:
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
        return run.complete(metrics, policy_stage="ppo")
