"""The math of PPO for language models, as pure torch functions (no model, no accelerate, no I/O).

Layout used throughout: a batch of ``B`` responses padded on the right to ``T`` tokens. ``mask`` is a ``(B, T)``
tensor, 1 for response tokens up to and including the first EOS, 0 after it. Every function here treats masked
positions as absent: they get no reward, no advantage and no weight in a loss.

References for the choices below: Ziegler et al. 2019 (adaptive KL), Schulman et al. 2016 (GAE), Ouyang et al.
2022 (InstructGPT), Huang et al. 2024 "The N implementation details of RLHF with PPO" (per-token KL reward, score
at the EOS token, whitening, value clipping, logits divided by the sampling temperature).

Losses come back as ``(sum over tokens, statistics)`` pairs: the caller divides by the number of response tokens
in the whole optimizer step, which is what makes per-device batch 1 x grad-accum 8 equal to batch 8 x 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]


# ------------------------------------------------------------------------------------------ masked stats
def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is 1. Shapes ``(B, T)`` -> scalar."""
    return (values * mask).sum()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (0 when the mask is empty). ``(B, T)`` -> scalar."""
    return masked_sum(values, mask) / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over masked positions; Bessel-corrected by default (as the whitening literature does)."""
    mean = masked_mean(values, mask)
    count = mask.sum()
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased and count > 1:
        var = var * count / (count - 1)
    return var


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """``(values - mean) / std`` over masked positions; masked positions become 0. ``(B, T)`` -> ``(B, T)``.

    ``shift_mean=False`` only rescales, keeping the sign of every value (used for token rewards).
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """``1 - Var[returns - values] / Var[returns]`` over masked tokens: 1 is a perfect critic, <= 0 useless.

    Returns ``nan`` when the returns have no variance (nothing to explain).
    """
    var_returns = masked_var(returns, mask, unbiased=False)
    if var_returns <= 0:
        return float("nan")
    return float(1.0 - masked_var(returns - values, mask, unbiased=False) / var_returns)


# ----------------------------------------------------------------------------------- sequences & tokens
def response_mask_after_eos(responses: torch.Tensor, eos_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the tokens each response really produced, and whether it ended with EOS.

    ``responses``: ``(B, T)`` sampled token ids (anything may follow the first EOS). Returns ``mask (B, T)``
    (float, 1 up to and including the first EOS, or everywhere when no EOS was produced) and
    ``ended (B,)`` (bool, True when an EOS was produced within ``T`` tokens).
    """
    is_eos = responses == eos_token_id
    ended = is_eos.any(dim=1)
    positions = torch.arange(responses.shape[1], device=responses.device).expand_as(responses)
    first_eos = torch.where(ended, is_eos.float().argmax(dim=1), responses.shape[1] - 1)
    mask = (positions <= first_eos.unsqueeze(1)).float()
    return mask, ended


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last masked token per row. ``(B, T)`` -> ``(B,)``; rows must have at least one token."""
    return mask.sum(dim=1).long() - 1


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each token under ``logits / temperature``. ``(B, T, V), (B, T)`` -> ``(B, T)``.

    Dividing by the sampling temperature makes the log-probs those of the distribution that sampled the tokens.
    """
    logits = logits.float() / temperature
    return torch.gather(logits.log_softmax(-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy (nats) of the next-token distribution at each position. ``(B, T, V)`` -> ``(B, T)``."""
    logp = (logits.float() / temperature).log_softmax(-1)
    return -(logp.exp() * logp).sum(-1)


# ----------------------------------------------------------------------------------------------- KL
def kl_per_token(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k1"
) -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from log-probs of tokens sampled by the policy.

    ``(B, T), (B, T)`` -> ``(B, T)``. With ``log_ratio = logprobs - ref_logprobs`` (Schulman's notes):
    ``k1 = log_ratio`` (unbiased, can be negative per token), ``k2 = log_ratio**2 / 2`` (biased, >= 0),
    ``k3 = exp(-log_ratio) - 1 + log_ratio`` (unbiased, >= 0, lower variance).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r} (k1, k2 or k3)")


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019: move ``value`` so the measured KL tracks ``target``.

    ``value <- value * (1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon)``; ``target=None`` keeps the
    coefficient fixed.
    """

    value: float
    target: float | None = None
    horizon: int = 10000

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is not None:
            error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value


# ------------------------------------------------------------------------------------ rewards & GAE
def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """InstructGPT reward per token: ``-kl_coef * kl`` at every token, plus the sequence score at the last one.

    ``scores (B,)``, ``kl (B, T)``, ``mask (B, T)`` -> ``(B, T)`` (0 at masked positions).
    """
    rewards = -kl_coef * kl * mask
    rows = torch.arange(scores.shape[0], device=scores.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response. ``(B, T)`` x 3 -> ``advantages, returns (B, T)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t``; ``A_t = delta_t + gamma * lam * A_{t+1}``; ``returns = A + V``.
    The state after the last response token is terminal (``V = 0``). Masked positions get 0 in both outputs.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(next_advantage)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


# ------------------------------------------------------------------------------------------- losses
@dataclass
class PolicyLossStats:
    clipped_tokens: torch.Tensor  # scalar: tokens where the clipped branch was active
    approx_kl_sum: torch.Tensor  # scalar: sum over tokens of 0.5 * (new - old)^2 (old policy -> new)
    ratio_sum: torch.Tensor  # scalar


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, PolicyLossStats]:
    """PPO clipped surrogate, summed over masked tokens. ``(B, T)`` x 4 -> ``(scalar, stats)``.

    Per token: ``max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps))`` with ``ratio = exp(logp - old_logp)``.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_sum(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = PolicyLossStats(
            clipped_tokens=masked_sum((clipped > unclipped).float(), mask),
            approx_kl_sum=masked_sum(0.5 * log_ratio**2, mask),
            ratio_sum=masked_sum(ratio, mask),
        )
    return loss, stats


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss, summed over masked tokens. ``(B, T)`` x 4 -> ``(loss, clipped token count)``.

    Per token: ``0.5 * max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)``.
    """
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_sum(torch.max(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        clipped_tokens = masked_sum((clipped_error > unclipped_error).float(), mask)
    return loss, clipped_tokens


# -------------------------------------------------------------------------------- score normalisation
@dataclass
class RunningMoments:
    """Running mean and standard deviation of sequence scores (Chan et al. parallel update).

    ``update`` folds in a batch and returns its own mean/std; ``normalize`` uses the running figures, so scores
    keep comparable scale across rollouts while the policy improves.
    """

    mean: float = 0.0
    var: float = 1.0
    count: float = 1e-24

    @property
    def std(self) -> float:
        return max(self.var, 0.0) ** 0.5

    def update(self, scores: torch.Tensor) -> None:
        scores = scores.double()
        batch_count = scores.numel()
        batch_mean = float(scores.mean())
        batch_var = float(scores.var(unbiased=False)) if batch_count > 1 else 0.0
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean += delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def normalize(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.mean) / (self.std + 1e-8)
