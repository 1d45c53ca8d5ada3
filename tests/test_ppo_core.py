"""PPO math against values computed by hand (alignment/ppo_core.py)."""

from __future__ import annotations

import math

import pytest
import torch

from alignment import ppo_core as core


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_response_mask_stops_at_first_eos_and_flags_truncation():
    eos = 2
    responses = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]])
    mask, ended = core.response_mask_after_eos(responses, eos)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]
    assert core.last_token_index(mask).tolist() == [1, 3, 0]


def test_masked_whiten_ignores_padding():
    values = t([[1.0, 3.0, 100.0]])
    mask = t([[1, 1, 0]])
    out = core.masked_whiten(values, mask)
    # mean 2, unbiased var 2 -> (v - 2) / sqrt(2); padding stays 0
    assert out[0, 0].item() == pytest.approx(-1 / math.sqrt(2), rel=1e-6)
    assert out[0, 1].item() == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert out[0, 2].item() == 0.0
    rescaled = core.masked_whiten(values, mask, shift_mean=False)
    assert rescaled[0, 0].item() == pytest.approx(2 - 1 / math.sqrt(2), rel=1e-6)


def test_kl_estimators_by_hand():
    logp, ref = t([[math.log(0.5)]]), t([[math.log(0.25)]])
    log_ratio = math.log(2.0)
    assert core.kl_per_token(logp, ref, "k1").item() == pytest.approx(log_ratio)
    assert core.kl_per_token(logp, ref, "k2").item() == pytest.approx(0.5 * log_ratio**2)
    assert core.kl_per_token(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + log_ratio)
    with pytest.raises(ValueError, match="k4"):
        core.kl_per_token(logp, ref, "k4")


def test_token_rewards_put_score_on_last_real_token():
    kl = t([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    mask = t([[1, 1, 0], [1, 1, 1]])
    rewards = core.token_rewards(t([1.0, -1.0]), kl, mask, kl_coef=0.5)
    assert rewards.flatten().tolist() == pytest.approx([-0.05, -0.1 + 1.0, 0.0, -0.25, -0.25, -0.25 - 1.0])


def test_gae_by_hand():
    rewards = t([[0.0, 0.0, 1.0], [0.0, 2.0, 9.0]])
    values = t([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])
    mask = t([[1, 1, 1], [1, 1, 0]])
    gamma, lam = 0.9, 0.8
    advantages, returns = core.gae(rewards, values, mask, gamma, lam)
    # row 0: deltas backwards from a terminal state
    d2 = 1.0 - 0.7
    d1 = 0.0 + 0.9 * 0.7 - 0.6
    d0 = 0.0 + 0.9 * 0.6 - 0.5
    a2 = d2
    a1 = d1 + 0.72 * a2
    a0 = d0 + 0.72 * a1
    assert advantages[0].tolist() == pytest.approx([a0, a1, a2])
    assert returns[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.6, a2 + 0.7])
    # row 1: the padded last position (reward 9, value 9) must not leak into the real tokens
    b1 = 2.0 - 1.0
    b0 = 0.0 + 0.9 * 1.0 - 1.0 + 0.72 * b1
    assert advantages[1].tolist() == pytest.approx([b0, b1, 0.0])
    assert returns[1].tolist() == pytest.approx([b0 + 1.0, b1 + 1.0, 0.0])


def test_gae_gamma_lambda_one_is_reward_to_go_minus_value():
    rewards = t([[1.0, 2.0, 3.0]])
    values = t([[0.5, 0.25, 0.125]])
    advantages, returns = core.gae(rewards, values, torch.ones_like(rewards), 1.0, 1.0)
    assert returns[0].tolist() == pytest.approx([6.0, 5.0, 3.0])
    assert advantages[0].tolist() == pytest.approx([5.5, 4.75, 2.875])


def test_policy_loss_clips_only_the_advantageous_direction():
    old = t([[0.0, 0.0, 0.0, 0.0]])
    new = t([[math.log(1.5), math.log(1.5), math.log(0.5), 5.0]])
    advantages = t([[1.0, -1.0, -1.0, 3.0]])
    mask = t([[1, 1, 1, 0]])
    loss, stats = core.policy_loss(new, old, advantages, mask, clip_range=0.2)
    # token 0: A>0, ratio 1.5 -> clipped to 1.2 -> -1.2 ; token 1: A<0, ratio 1.5 -> unclipped 1.5
    # token 2: A<0, ratio 0.5 -> clipped to 0.8 -> 0.8 ; token 3 masked
    assert loss.item() == pytest.approx(-1.2 + 1.5 + 0.8)
    assert stats.clipped_tokens.item() == 2
    expected_kl = 0.5 * (math.log(1.5) ** 2 * 2 + math.log(0.5) ** 2)
    assert stats.approx_kl_sum.item() == pytest.approx(expected_kl)
    assert stats.ratio_sum.item() == pytest.approx(3.5)


def test_policy_loss_gradient_is_zero_on_clipped_tokens():
    new = t([[math.log(1.5), 0.0]]).requires_grad_(True)
    loss, _ = core.policy_loss(new, t([[0.0, 0.0]]), t([[1.0, 1.0]]), t([[1, 1]]), clip_range=0.2)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([0.0, -1.0])


def test_value_loss_takes_the_pessimistic_branch():
    values = t([[2.0, 0.1]])
    old = t([[0.0, 0.0]])
    returns = t([[3.0, -1.0]])
    loss, clipped = core.value_loss(values, old, returns, t([[1, 1]]), clip_range_value=0.5)
    # token 0: unclipped (2-3)^2=1, clipped (0.5-3)^2=6.25 -> 6.25 ; token 1: (1.1)^2=1.21 vs (0.1+1)^2 same
    assert loss.item() == pytest.approx(0.5 * (6.25 + 1.21))
    assert clipped.item() == 1


def test_explained_variance():
    returns = t([[1.0, 2.0, 3.0, 50.0]])
    mask = t([[1, 1, 1, 0]])
    assert core.explained_variance(returns.clone(), returns, mask) == pytest.approx(1.0)
    assert core.explained_variance(torch.zeros_like(returns) + 2.0, returns, mask) == pytest.approx(0.0)
    assert math.isnan(core.explained_variance(returns, torch.ones_like(returns), mask))


def test_adaptive_kl_controller_moves_towards_target_and_fixed_stays():
    ctl = core.AdaptiveKLController(value=0.1, target=6.0, horizon=100)
    assert ctl.update(current_kl=12.0, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert ctl.update(current_kl=3.0, n_steps=10) == pytest.approx(0.1 * 1.02 * (1 - 0.2 * 0.1))
    fixed = core.AdaptiveKLController(value=0.05, target=None)
    assert fixed.update(100.0, 1000) == 0.05


def test_running_moments_match_the_pooled_statistics():
    moments = core.RunningMoments()
    first, second = t([1.0, 2.0, 3.0]), t([10.0, 20.0])
    moments.update(first)
    moments.update(second)
    pooled = torch.cat([first, second])
    assert moments.mean == pytest.approx(pooled.mean().item())
    assert moments.std == pytest.approx(pooled.std(unbiased=False).item())
    assert moments.normalize(t([moments.mean])).item() == pytest.approx(0.0)


def test_token_logprobs_and_entropy_with_temperature():
    logits = torch.log(t([[[0.5, 0.25, 0.25]]]))
    assert core.token_logprobs(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.25))
    assert core.entropy(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    # temperature 2 flattens: probabilities proportional to sqrt(p)
    z = math.sqrt(0.5) + 2 * math.sqrt(0.25)
    assert core.token_logprobs(logits, torch.tensor([[0]]), temperature=2.0).item() == pytest.approx(
        math.log(math.sqrt(0.5) / z)
    )
