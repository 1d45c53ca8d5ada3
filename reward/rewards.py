"""The combined reward and its TRL-compatible reward callables.

    from reward.rewards import RewardFunctionConfig, make_combined_reward
    cfg = load_config(RewardFunctionConfig, "configs/reward_weights.yaml")
    reward_fn = make_combined_reward(cfg, scorer=None)   # GRPOTrainer(reward_funcs=[reward_fn], ...)

A callable has TRL's signature ``fn(prompts, completions, completion_ids=None, **columns) -> list[float]``;
``columns`` must hold ``tests`` (list of snippets per row). The program is ``prompt + completion``; for chat
data (lists of messages) it is the code of the last message (a ```python fence if there is one).
A learned reward model enters as ``scorer(prompts, completions) -> list[float]`` supplied by the training
side (this package imports no torch). Static analysis runs in a thread while the sandbox executes.

Guarantee: a call returns within ``batch_timeout_s`` + a few seconds; runs the sandbox could not do score
``sandbox_error_reward``; a static pass that fails or overruns is left out of the sum, with a warning.
When TRL passes ``log_metric``/``log_extra`` the callables log the pass rate, the
mean of each term and per-sample verdicts.
"""

from __future__ import annotations

import logging
import math
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from codealign.errors import UserError
from codealign.tasks.chat import program
from reward.shaping import combine, execution_score, static_score
from reward.static import StaticResult

log = logging.getLogger(__name__)

Scorer = Callable[[list[Any], list[Any]], Sequence[float]]


@dataclass
class RewardFunctionConfig:
    """How the reward functions score code: shaping, weights, sandbox limits (``configs/reward_weights.yaml``).

    Not TRL's ``RewardConfig`` (the reward-*model* trainer's arguments, used by ``train reward_model``)."""

    execution_weight: float = 1.0
    static_weight: float = 0.1  # a tie-breaker among programs with equal execution reward
    learned_weight: float = 0.0  # used only when a scorer is supplied
    # How the learned (reward-model) term enters. "additive": everywhere. "gated": only where every test
    # passed, squashed to learned_weight * learned_bound * tanh(score) — so no reward-model score can lift
    # a failing program over a passing one, and in a group where nothing passes the reward model moves nothing.
    # (Measured additive on this suite: the policy gamed the reward model, pass@1 fell 12.9 -> 2.9 %.)
    learned_mode: Literal["additive", "gated"] = "additive"
    learned_bound: float = 0.5
    shaping: Literal["rltf", "binary", "pass_ratio"] = "rltf"  # rltf = base + partial credit (see shaping.py)
    passed_reward: float = 1.0
    failed_reward: float = -0.3
    runtime_error_reward: float = -0.6
    timeout_reward: float = -0.6
    memory_exceeded_reward: float = -0.6
    syntax_error_reward: float = -1.0
    sandbox_error_reward: float = 0.0  # our failure, not the policy's: neutral
    static_weights: dict = field(default_factory=lambda: {"lint": 1.0, "complexity": 1.0, "security": 1.0})
    timeout_s: float = 5.0  # per program (all its tests)
    memory_mb: int = 512
    batch_timeout_s: float = 300.0  # a whole reward call; training never waits longer
    workers: int | None = None  # sandbox workers (default CPU count + 1)

    def __post_init__(self) -> None:
        unknown = set(self.static_weights) - {"lint", "complexity", "security"}
        if unknown:
            raise UserError(f"static_weights: unknown signal '{min(unknown)}' (lint, complexity, security)")
        if self.timeout_s <= 0 or self.batch_timeout_s <= 0:
            raise UserError("timeout_s and batch_timeout_s must be positive")
        if self.memory_mb < 16:
            raise UserError(f"memory_mb must be at least 16, got {self.memory_mb}")
        if self.learned_mode == "gated" and self.learned_weight * self.learned_bound >= self.passed_reward:
            raise UserError(
                "learned_weight x learned_bound must stay below passed_reward in gated mode, or a reward-model "
                f"score could outweigh passing the tests ({self.learned_weight} x {self.learned_bound})"
            )


@dataclass
class RewardBreakdown:
    total: float
    execution: float
    static: float | None
    learned: float | None
    verdict: str
    pass_ratio: float
    error_line: int | None = None  # line of prompt + completion that raised (RLTF penalises its tokens)


def _text(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, list) and message and isinstance(message[-1], dict):  # chat messages
        content = message[-1].get("content", "")
        return content if isinstance(content, str) else ""
    raise UserError(f"reward: expected a string or a list of chat messages, got {type(message).__name__}")


def program_text(prompt: Any, completion: Any) -> str:
    """What runs: ``prompt + completion`` for plain text; the code of the reply for chat data (fenced or bare:
    :func:`codealign.tasks.chat.program`, the one extractor evaluation, scoring and the app use too)."""
    if isinstance(completion, str):
        return program(_text(prompt), completion, chat=False)
    return program("", _text(completion), chat=True)


def _tests_column(columns: dict, n: int) -> list[list[str]]:
    tests = columns.get("tests")
    if tests is None:
        raise UserError("reward: the dataset needs a 'tests' column (list of test snippets per row)")
    if len(tests) != n:
        raise UserError(f"reward: 'tests' has {len(tests)} rows for {n} completions")
    return [[t] if isinstance(t, str) else list(t) for t in tests]


def compute_rewards(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    tests: Sequence[Sequence[str]],
    cfg: RewardFunctionConfig,
    *,
    use_execution: bool = True,
    use_static: bool = True,
    scorer: Scorer | None = None,
) -> list[RewardBreakdown]:
    """Scalar reward and its terms for each completion."""
    from reward.pool import get_pool
    from reward.static import analyze_batch

    programs = [program_text(p, c) for p, c in zip(prompts, completions)]
    static: list[StaticResult] | None = None

    def run_static() -> None:
        nonlocal static
        starts = [_text(p).count("\n") + 1 if isinstance(c, str) else 1 for p, c in zip(prompts, completions)]
        try:
            static = analyze_batch(programs, score_from_line=starts)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # e.g. ruff missing or crashed
            log.warning("static analysis failed for this batch, static term left out: %s", exc)

    thread = threading.Thread(target=run_static, daemon=True) if use_static else None
    if thread:
        thread.start()
    if use_execution:
        pool = get_pool(cfg.workers)
        # the prompt travels too (plain text only): the tests then see its own helpers, not redefinitions
        requests = [
            (program, list(t), _text(p)) if isinstance(c, str) else (program, list(t))
            for program, t, p, c in zip(programs, tests, prompts, completions)
        ]
        executions = pool.run_batch(
            requests,
            timeout_s=cfg.timeout_s,
            memory_mb=cfg.memory_mb,
            batch_timeout_s=cfg.batch_timeout_s,
        )
    else:
        executions = [None] * len(programs)
    if thread:
        thread.join(cfg.batch_timeout_s)
        if thread.is_alive():
            log.warning(
                "static analysis exceeded batch_timeout_s=%s; static term left out", cfg.batch_timeout_s
            )
    learned = list(scorer(list(prompts), list(completions))) if scorer is not None else None
    if learned is not None and len(learned) != len(programs):
        raise ValueError(f"scorer returned {len(learned)} scores for {len(programs)} completions")

    weights_cfg = cfg if use_execution else replace(cfg, execution_weight=0.0)
    out = []
    for i, execution in enumerate(executions):
        exec_r = execution_score(execution, cfg) if execution is not None else 0.0
        static_r = static_score(static[i], cfg.static_weights) if static is not None else None
        learned_r = float(learned[i]) if learned is not None else None
        if learned_r is not None and cfg.learned_mode == "gated":
            passed = execution is not None and execution.verdict == "passed"
            learned_r = cfg.learned_bound * math.tanh(learned_r) if passed else 0.0
        out.append(
            RewardBreakdown(
                total=combine(exec_r, static_r, learned_r, weights_cfg),
                execution=exec_r,
                static=static_r,
                learned=learned_r,
                verdict=execution.verdict if execution is not None else "not_run",
                pass_ratio=execution.pass_ratio if execution is not None else 0.0,
                error_line=execution.error_line if execution is not None else None,
            )
        )
    return out


def _make(
    name: str, cfg: RewardFunctionConfig | None, use_execution: bool, use_static: bool, scorer: Scorer | None
):
    cfg = cfg or RewardFunctionConfig()

    def reward_fn(prompts, completions, completion_ids=None, **columns) -> list[float]:
        tests = _tests_column(columns, len(completions)) if use_execution else [[] for _ in completions]
        parts = compute_rewards(
            prompts,
            completions,
            tests,
            cfg,
            use_execution=use_execution,
            use_static=use_static,
            scorer=scorer,
        )
        _log(columns, name, parts)
        return [p.total for p in parts]

    reward_fn.__name__ = reward_fn.__qualname__ = name  # TRL logs rewards under this name
    reward_fn.config = cfg
    return reward_fn


def _log(columns: dict, name: str, parts: list[RewardBreakdown]) -> None:
    log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
    if not parts:
        return
    if callable(log_metric):
        log_metric(f"{name}/pass_rate", sum(p.verdict == "passed" for p in parts) / len(parts))
        log_metric(f"{name}/execution", sum(p.execution for p in parts) / len(parts))
        statics = [p.static for p in parts if p.static is not None]
        if statics:
            log_metric(f"{name}/static", sum(statics) / len(statics))
        log_metric(f"{name}/sandbox_errors", float(sum(p.verdict == "sandbox_error" for p in parts)))
    if callable(log_extra):
        log_extra(f"{name}_verdict", [p.verdict for p in parts])


def execution_reward(cfg: RewardFunctionConfig | None = None) -> Callable[..., list[float]]:
    """Shaped execution reward only (RLTF partial credit by default)."""
    return _make("execution_reward", cfg, use_execution=True, use_static=False, scorer=None)


def static_reward(cfg: RewardFunctionConfig | None = None) -> Callable[..., list[float]]:
    """Static signals only (0..1 weighted mean), scaled by ``static_weight``; no execution."""
    return _make("static_reward", cfg, use_execution=False, use_static=True, scorer=None)


def make_combined_reward(
    cfg: RewardFunctionConfig | None = None, scorer: Scorer | None = None
) -> Callable[..., list[float]]:
    """Execution + static + (with ``scorer``) learned reward-model score, weighted by ``cfg``."""
    return _make("combined_reward", cfg, use_execution=True, use_static=True, scorer=scorer)
