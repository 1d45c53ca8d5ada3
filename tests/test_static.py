"""Static signals: syntax, ruff lint, radon complexity, bandit security; normalised scores, raw findings."""

from __future__ import annotations

import pytest

from reward.static import analyze, analyze_batch, severity_counts

CLEAN = 'def add(a: int, b: int) -> int:\n    """Sum."""\n    return a + b\n'


def test_clean_code_scores_one_everywhere():
    r = analyze(CLEAN)
    assert r.syntax_ok and r.scores == {"syntax": 1.0, "lint": 1.0, "complexity": 1.0, "security": 1.0}
    assert r.findings["ruff"] == [] and r.findings["bandit"] == []
    assert r.findings["radon"] == [{"name": "add", "line": 1, "endline": 3, "complexity": 1}]


def test_syntax_error_zeroes_every_score():
    r = analyze("def f(:\n    pass\n")
    assert not r.syntax_ok and set(r.scores.values()) == {0.0}
    assert r.syntax_error.startswith("SyntaxError")


def test_lint_findings_lower_the_lint_score():
    r = analyze("import os\ndef f(x):\n    return undefined_name + x\n")
    codes = {f["code"] for f in r.findings["ruff"]}
    assert codes == {"F401", "F821"}
    assert r.scores["lint"] == pytest.approx(1 / (1 + 0.25 * 4))  # pyflakes findings count double


def test_complexity_from_radon():
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(12))
    r = analyze("def f(x):\n" + branches + "    return -1\n")
    assert r.findings["radon"][0]["complexity"] == 13
    assert r.scores["complexity"] == pytest.approx(5 / 13)


def test_security_findings_by_severity():
    r = analyze("import subprocess\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n")
    counts = severity_counts(r)
    assert counts.get("HIGH", 0) >= 1
    assert r.scores["security"] < 0.6


def test_score_from_line_ignores_the_prompt():
    prompt = "import os\n\ndef f(x):\n"
    code = prompt + "    return x\n"
    full = analyze(code)
    completion_only = analyze(code, score_from_line=prompt.count("\n") + 1)
    assert full.scores["lint"] < 1.0 and completion_only.scores["lint"] == 1.0
    assert completion_only.findings["ruff"] == full.findings["ruff"]  # raw findings are kept


def test_batch_keeps_each_result_with_its_code():
    codes = [CLEAN, "import os\n", "def f(:\n", "eval(input())\n"] * 5
    results = analyze_batch(codes)
    assert [r.syntax_ok for r in results] == [True, True, False, True] * 5
    assert all(results[i].findings["ruff"] == [] for i in range(0, 20, 4))
    assert all(results[i].findings["ruff"][0]["code"] == "F401" for i in range(1, 20, 4))
    assert all(results[i].findings["bandit"] for i in range(3, 20, 4))


def test_parallel_batch_equals_serial(monkeypatch):
    from reward import static

    monkeypatch.setattr(static, "PARALLEL_MIN_BATCH", 4)
    codes = [CLEAN, "import os\n", "eval(input())\n", "def f(:\n"] * 2
    assert analyze_batch(codes, workers=2) == analyze_batch(codes)


def test_empty_batch():
    assert analyze_batch([]) == []
