"""Shaping against hand-computed values, and the TRL-style reward callables end to end (real sandbox)."""

from __future__ import annotations

import pytest

from codealign.config import ConfigError, load_config
from codealign.errors import UserError
from reward.execution import ExecutionResult
from reward.rewards import (
    RewardFunctionConfig,
    execution_reward,
    make_combined_reward,
    program_text,
    static_reward,
)
from reward.shaping import combine, execution_score, static_score
from reward.static import StaticResult

PROMPT = 'def add(a, b):\n    """Return a + b."""\n'
TESTS = ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(2, 2) == 4"]


def result(verdict: str, passed: int = 0, total: int = 3) -> ExecutionResult:
    return ExecutionResult(verdict, passed, total, 0.1, None, None, "", "full")


@pytest.mark.parametrize(
    ("verdict", "passed", "expected"),
    [
        ("passed", 3, 1.0),
        ("failed", 0, -0.3),
        ("failed", 1, -0.3 + 1.3 / 3),  # RLTF partial credit
        ("runtime_error", 2, -0.6 + 1.6 * 2 / 3),
        ("timeout", 0, -0.6),
        ("memory_exceeded", 0, -0.6),
        ("syntax_error", 0, -1.0),
        ("sandbox_error", 0, 0.0),
    ],
)
def test_rltf_shaping(verdict, passed, expected):
    assert execution_score(result(verdict, passed), RewardFunctionConfig()) == pytest.approx(expected)


def test_binary_and_pass_ratio_shaping():
    assert execution_score(result("failed", 2), RewardFunctionConfig(shaping="binary")) == -0.3
    assert execution_score(result("failed", 2), RewardFunctionConfig(shaping="pass_ratio")) == pytest.approx(
        2 / 3
    )


def test_static_score_and_combination():
    static = StaticResult(True, {"syntax": 1.0, "lint": 0.5, "complexity": 1.0, "security": 0.0})
    assert static_score(static, {"lint": 1.0, "complexity": 1.0, "security": 2.0}) == pytest.approx(1.5 / 4)
    assert static_score(StaticResult(False, {}), {"lint": 1.0}) == 0.0
    cfg = RewardFunctionConfig(execution_weight=1.0, static_weight=0.2, learned_weight=0.5)
    assert combine(1.0, 0.5, -2.0, cfg) == pytest.approx(1.0 + 0.1 - 1.0)
    assert combine(1.0, None, None, cfg) == 1.0


def test_config_from_yaml_and_bad_keys(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("static_weight: 0.3\nshaping: binary\n")
    cfg = load_config(RewardFunctionConfig, path, ["timeout_s=2"])
    assert (cfg.static_weight, cfg.shaping, cfg.timeout_s) == (0.3, "binary", 2.0)
    path.write_text("static_wieght: 0.3\n")
    with pytest.raises(ConfigError, match="static_weight"):
        load_config(RewardFunctionConfig, path)
    with pytest.raises(UserError, match="static_weights: unknown signal 'style'"):
        RewardFunctionConfig(static_weights={"style": 1.0})


def test_program_text_plain_and_chat():
    assert program_text("def f():\n", "    return 1\n") == "def f():\n    return 1\n"
    chat = [{"role": "assistant", "content": "Here:\n```python\ndef f():\n    return 1\n```\n"}]
    assert program_text([{"role": "user", "content": "write f"}], chat) == "def f():\n    return 1\n"


def test_execution_reward_matches_trl_signature_and_orders_results():
    fn = execution_reward(RewardFunctionConfig(timeout_s=2.0))
    assert fn.__name__ == "execution_reward"
    completions = ["    return a + b\n", "    return a * b\n", "    return a +\n", "    return 1 / 0\n"]
    rewards = fn(
        prompts=[PROMPT] * 4,
        completions=completions,
        completion_ids=None,
        tests=[TESTS] * 4,
        entry_point=["add"] * 4,
    )
    # a*b passes add(0, 0) and add(2, 2): RLTF -0.3 + 1.3 * 2/3
    assert rewards == pytest.approx([1.0, -0.3 + 1.3 * 2 / 3, -1.0, -0.6])


def test_combined_reward_breaks_ties_with_static_signals_and_logs():
    metrics, extra = {}, {}
    fn = make_combined_reward(RewardFunctionConfig(static_weight=0.1, timeout_s=2.0))
    clean = "    return a + b\n"
    messy = "    import os\n    l = a + b\n    return l\n"
    rewards = fn(
        [PROMPT, PROMPT],
        [clean, messy],
        tests=[TESTS, TESTS],
        log_metric=lambda k, v: metrics.__setitem__(k, v),
        log_extra=lambda k, v: extra.__setitem__(k, v),
    )
    assert rewards[0] == pytest.approx(1.0 + 0.1)
    assert 1.0 < rewards[1] < rewards[0]
    assert metrics["combined_reward/pass_rate"] == 1.0
    assert extra["combined_reward_verdict"] == ["passed", "passed"]


def test_breakdown_locates_the_failing_line():
    from reward.rewards import compute_rewards

    parts = compute_rewards(
        [PROMPT], ["    x = 1\n    return a / 0\n"], [TESTS], RewardFunctionConfig(timeout_s=2.0)
    )
    assert (parts[0].verdict, parts[0].error_line, parts[0].execution) == ("runtime_error", 4, -0.6)


def test_learned_scorer_is_weighted_in():
    calls = []

    def scorer(prompts, completions):
        calls.append(len(completions))
        return [0.5 for _ in completions]

    fn = make_combined_reward(
        RewardFunctionConfig(static_weight=0.0, learned_weight=2.0, timeout_s=2.0), scorer=scorer
    )
    assert fn([PROMPT], ["    return a + b\n"], tests=[TESTS]) == pytest.approx([1.0 + 2.0 * 0.5])
    assert calls == [1]


def test_static_reward_needs_no_tests():
    fn = static_reward(RewardFunctionConfig(static_weight=1.0))
    assert fn([PROMPT], ["    return a + b\n"]) == pytest.approx([1.0])


def test_missing_tests_column_is_a_clear_error():
    with pytest.raises(UserError, match="'tests' column"):
        execution_reward()([PROMPT], ["    return a + b\n"])
    with pytest.raises(UserError, match="2 rows for 1"):
        execution_reward()([PROMPT], ["    return a + b\n"], tests=[TESTS, TESTS])


def test_sandbox_errors_are_neutral(monkeypatch):
    from reward import pool

    class BrokenPool:
        def run_batch(self, requests, **limits):
            return [ExecutionResult.sandbox_error("down", len(t)) for _, t, *_prompt in requests]

    monkeypatch.setattr(pool, "get_pool", lambda workers=None: BrokenPool())
    assert execution_reward()([PROMPT], ["    return a + b\n"], tests=[TESTS]) == [0.0]


def test_static_failure_leaves_the_term_out_with_a_warning(monkeypatch, caplog):
    from reward import static

    def broken(*args, **kwargs):
        raise RuntimeError("ruff failed (exit 2)")

    monkeypatch.setattr(static, "analyze_batch", broken)
    fn = make_combined_reward(RewardFunctionConfig(static_weight=0.5, timeout_s=2.0))
    with caplog.at_level("WARNING"):
        assert fn([PROMPT], ["    return a + b\n"], tests=[TESTS]) == [1.0]
    assert "static term left out" in caplog.text


def test_gated_learned_term_only_counts_where_the_tests_pass():
    """The reward model cannot lift a failing program (measured: added everywhere, it was gamed)."""
    import math
    from dataclasses import replace

    from reward.rewards import RewardFunctionConfig, compute_rewards

    cfg = load_config(RewardFunctionConfig, "configs/reward_rlhf.yaml", ["timeout_s=2.0"])
    assert (cfg.learned_mode, cfg.learned_bound, cfg.failed_reward) == ("gated", 0.5, 0.0)
    completions = ["    return a + b\n", "    return a - b\n"]
    parts = compute_rewards([PROMPT] * 2, completions, [TESTS] * 2, cfg, scorer=lambda p, c: [-0.3, 50.0])
    passing, failing = parts
    assert passing.total == pytest.approx(1.0 + 0.5 * math.tanh(-0.3)) and passing.verdict == "passed"
    assert failing.total == 0.0 and failing.learned == 0.0  # a huge score changes nothing here
    additive = replace(cfg, learned_mode="additive")
    assert (
        compute_rewards([PROMPT], completions[1:], [TESTS], additive, scorer=lambda p, c: [50.0])[0].total
        == 50.0
    )
    with pytest.raises(UserError, match="must stay below passed_reward"):
        RewardFunctionConfig(learned_mode="gated", learned_weight=2.0, learned_bound=0.5)
