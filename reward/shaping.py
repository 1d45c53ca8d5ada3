"""Reward shaping: pure functions from execution/static results to scalars. No I/O, no torch.

Execution (CodeRL, Le et al. 2022; RLTF, Liu et al. 2023): every verdict has a base reward (all pass +1, failed tests -0.3, runtime
error -0.6, syntax error -1 by default). With partial credit a non-passing program that ran some tests earns
``base + (passed_reward - base) * pass_ratio`` — for ``failed`` exactly RLTF's ``-0.3 + 1.3 * pass_ratio``.
Syntax errors get no partial credit (nothing ran). ``sandbox_error`` is our failure, never the program's: it
gets ``sandbox_error_reward`` (default 0, neutral).
"""

from __future__ import annotations

from reward.execution import ExecutionResult
from reward.static import StaticResult


def execution_score(result: ExecutionResult, cfg) -> float:
    """Shaped execution reward; ``cfg`` is a :class:`reward.rewards.RewardFunctionConfig` (its *_reward fields)."""
    base = {
        "passed": cfg.passed_reward,
        "failed": cfg.failed_reward,
        "runtime_error": cfg.runtime_error_reward,
        "syntax_error": cfg.syntax_error_reward,
        "timeout": cfg.timeout_reward,
        "memory_exceeded": cfg.memory_exceeded_reward,
        "sandbox_error": cfg.sandbox_error_reward,
    }.get(result.verdict)
    if base is None:
        raise ValueError(f"unknown verdict {result.verdict!r}")
    if result.verdict in ("passed", "syntax_error", "sandbox_error") or cfg.shaping == "binary":
        return base
    if cfg.shaping == "pass_ratio":
        return result.pass_ratio
    return base + (cfg.passed_reward - base) * result.pass_ratio


def static_score(result: StaticResult, weights: dict[str, float]) -> float:
    """Weighted mean of the normalised static scores (0..1); 0 when the code does not parse."""
    if not result.syntax_ok:
        return 0.0
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    return sum(result.scores.get(name, 0.0) * w for name, w in weights.items()) / total


def combine(execution: float, static: float | None, learned: float | None, cfg) -> float:
    """``execution_weight * execution + static_weight * static + learned_weight * learned``; absent: 0."""
    total = cfg.execution_weight * execution
    if static is not None:
        total += cfg.static_weight * static
    if learned is not None:
        total += cfg.learned_weight * learned
    return total
