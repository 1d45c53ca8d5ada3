"""The two halves of a PPO step (:mod:`alignment.ppo`): collect a rollout, then update on it.

:func:`collect_rollout` samples one answer per prompt with the evaluation's sampler, scores it with the reward
functions, runs the frozen reference and the critic, and turns scores into whitened GAE advantages
(:class:`RolloutBatch`); :func:`ppo_update` runs ``num_ppo_epochs`` passes of clipped policy and value losses
over it. The math is in :mod:`alignment.ppo_core`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codealign.errors import UserError

RewardFunc = Callable[..., list]


@dataclass
class RolloutBatch:
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
def load_reward_funcs(cfg) -> list[RewardFunc]:
    """The callables behind ``reward_funcs``, resolved exactly as GRPO resolves them."""
    from alignment.grpo import resolve_reward

    return [resolve_reward(name, cfg) for name in cfg.reward_funcs]


def combined_scores(
    funcs: list[RewardFunc], weights: list[float], prompts: list, completions: list, **columns: Any
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


def sample_responses(model, accelerator, tokenizer, prompts: list[str], cfg, seed: int):
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
    from alignment.generation import _left_pad
    from alignment.tokenization import prompt_ids

    # the ids the sampler fed (BOS, chat template: alignment.tokenization), left-padded
    queries, query_mask = _left_pad(
        [prompt_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, "cpu"
    )
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
        queries.to(device),
        query_mask.to(device),
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

    prompts = [t.model_prompt for t in tasks]  # a chat task's conversation
    queries, query_mask, responses, mask, ended, completions = sample_responses(
        model, accelerator, tokenizer, prompts, cfg, seed
    )
    # the rewards get chat answers as TRL's GRPO hands them over: one assistant message
    answers = [[{"role": "assistant", "content": c}] if t.chat else c for t, c in zip(tasks, completions)]
    columns = {
        "tests": [list(t.tests) for t in tasks],
        "entry_point": [t.entry_point for t in tasks],
        "task_id": [t.task_id for t in tasks],
    }
    raw, per_func = combined_scores(
        reward_funcs,
        weights,
        prompts,
        answers,
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
    rollout = RolloutBatch(queries, query_mask, responses, mask, logprobs, values, advantages, returns)
    return rollout, stats, completions


# ----------------------------------------------------------------------------------------------- update
def ppo_update(accelerator, model, optimizer, scheduler, rollout: RolloutBatch, cfg, generator):
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
