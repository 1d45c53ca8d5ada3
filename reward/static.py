"""Static signals for generated code: syntax (ast), lint (ruff), complexity (radon), security (bandit).

``analyze_batch(codes)`` returns one :class:`StaticResult` per code string, each with normalised 0..1 scores
(1 is best) and the raw findings. Ruff runs once per batch over a temporary directory (JSON output), in
parallel with the in-process radon/bandit pass; with ``workers > 1`` large batches spread radon/bandit over
worker processes. Nothing here executes the code.

``score_from_line`` lets callers ignore findings in a part they do not control (the task prompt): the scores
count findings at or after that 1-based line, the raw findings keep everything.

Score definitions (documented once, used by the reward):

* ``syntax``: 1 if ``ast.parse`` succeeds, else 0 (and every other score is 0);
* ``lint``: ``1 / (1 + 0.25 * n)``, ``n`` = ruff style/bug findings, pyflakes (``F``) counted double;
* ``complexity``: ``min(1, 5 / max cyclomatic complexity)`` over functions (radon); 1 with no functions;
* ``security``: ``1 / (1 + Σ w)``, w = 1.0 / 0.5 / 0.1 for bandit HIGH / MEDIUM / LOW severity.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Style and bug rules for the lint score. C901 (complexity) and S (security) are left to radon and bandit.
RUFF_RULES = "E,F,W,B,SIM,PL,N,UP,C4"
SEVERITY_WEIGHTS = {"HIGH": 1.0, "MEDIUM": 0.5, "LOW": 0.1}
COMPLEXITY_TARGET = 5
PARALLEL_MIN_BATCH = 256
RUFF_TIMEOUT_S = 120


@dataclass
class StaticResult:
    """Normalised scores (0..1, 1 best) and the raw findings for one code string."""

    syntax_ok: bool
    scores: dict[str, float]  # syntax, lint, complexity, security
    findings: dict[str, Any] = field(default_factory=dict)  # ruff: [...], radon: [...], bandit: [...]
    syntax_error: str | None = None

    @property
    def mean_score(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0


def analyze(code: str, score_from_line: int = 1) -> StaticResult:
    return analyze_batch([code], score_from_line=[score_from_line])[0]


def analyze_batch(
    codes: Sequence[str],
    *,
    score_from_line: Sequence[int] | None = None,
    workers: int = 1,
    ruff: bool = True,
    readability: bool = False,
) -> list[StaticResult]:
    """All static signals for ``codes`` (see module docstring). ``workers`` > 1 parallelises big batches.

    ``readability`` adds :mod:`reward.readability`'s issues in the scored part (``findings["readability"]``,
    ``scores["readability"] = 1 / (1 + issues)``): what ``codealign score`` stores for annotators, the panel
    and the report; off by default, since the reward path does not use it (a second ruff pass + vulture)."""
    codes = list(codes)
    starts = list(score_from_line) if score_from_line is not None else [1] * len(codes)
    if len(starts) != len(codes):
        raise ValueError("score_from_line must have one entry per code string")
    if not codes:
        return []
    with tempfile.TemporaryDirectory(prefix="codealign-static-", dir=_scratch_dir()) as tmp:
        ruff_proc = _start_ruff(codes, tmp) if ruff else None
        try:
            local = _python_signals_parallel(codes, workers)
            ruff_findings = _finish_ruff(ruff_proc) if ruff_proc else [[] for _ in codes]
        finally:
            if ruff_proc is not None and ruff_proc.poll() is None:
                ruff_proc.kill()
                ruff_proc.communicate()
    results = [_combine(sig, rf, start) for sig, rf, start in zip(local, ruff_findings, starts)]
    if readability:
        from reward.readability import readability_issues

        for result, issues in zip(results, readability_issues(codes, starts)):
            result.findings["readability"] = [i.as_dict() for i in issues]
            result.scores["readability"] = 1.0 / (1.0 + len(issues)) if result.syntax_ok else 0.0
    return results


# ------------------------------------------------------------------------------------------------ ruff
def _scratch_dir() -> str | None:
    """tmpfs when there is one: creating thousands of small files on a disk-backed /tmp costs ~0.5 ms each."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _ruff_binary() -> str:
    from ruff.__main__ import find_ruff_bin

    return find_ruff_bin()


def _start_ruff(codes: list[str], tmp: str, rules: str = RUFF_RULES) -> subprocess.Popen:
    for i, code in enumerate(codes):
        fd = os.open(os.path.join(tmp, f"{i:07d}.py"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, code.encode("utf-8", "surrogatepass"))
        finally:
            os.close(fd)
    cmd = [
        _ruff_binary(),
        "check",
        "--output-format",
        "json",
        "--no-cache",
        "--isolated",
        "--exit-zero",
        "--select",
        rules,
        "--line-length",
        "110",
        tmp,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.n_files = len(codes)
    return proc


def _finish_ruff(proc: subprocess.Popen) -> list[list[dict]]:
    out, err = proc.communicate(timeout=RUFF_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"ruff failed (exit {proc.returncode}): {err.strip()[:300]}")
    per_file: list[list[dict]] = [[] for _ in range(proc.n_files)]
    for item in json.loads(out or "[]"):
        index = int(os.path.basename(item["filename"])[:-3])
        per_file[index].append(
            {"code": item["code"], "line": item["location"]["row"], "message": item["message"]}
        )
    return per_file


# --------------------------------------------------------------------------------------- radon + bandit
_bandit = None


def _bandit_manager():
    global _bandit
    if _bandit is None:
        import warnings

        logging.getLogger("bandit").setLevel(logging.ERROR)
        with warnings.catch_warnings():  # stevedore's plugin loading warns about a deprecated argument
            warnings.simplefilter("ignore", DeprecationWarning)
            from bandit.core import config, manager, node_visitor  # noqa: F401 -- loads plugins here

            _bandit = manager.BanditManager(config.BanditConfig(), "file", quiet=True)
    return _bandit


def _python_signals(code: str) -> dict[str, Any]:
    """ast + radon cyclomatic complexity + bandit issues for one string (runs in any process)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return {"syntax_error": f"{type(exc).__name__}: {exc}"}
    from radon.visitors import ComplexityVisitor

    visitor = ComplexityVisitor.from_ast(tree)
    blocks = [
        {"name": b.fullname, "line": b.lineno, "endline": b.endline, "complexity": b.complexity}
        for b in visitor.functions + [m for c in visitor.classes for m in c.methods]
    ]
    try:
        issues = _bandit_issues(code, tree)
    except Exception as exc:  # noqa: BLE001 -- bandit bugs on odd input must not lose the other signals
        issues = [
            {
                "test_id": "BANDIT_ERROR",
                "severity": "LOW",
                "confidence": "LOW",
                "line": 0,
                "message": str(exc),
            }
        ]
    return {"radon": blocks, "bandit": issues}


def _bandit_issues(code: str, tree: ast.AST) -> list[dict[str, Any]]:
    """Bandit's ``BanditNodeVisitor.process`` on our already-parsed tree (it would parse again)."""
    mgr = _bandit_manager()
    from bandit.core import node_visitor

    mgr.metrics.begin("snippet.py")
    data = code.encode("utf-8", "replace")
    visitor = node_visitor.BanditNodeVisitor(
        "snippet.py", io.BytesIO(data), mgr.b_ma, mgr.b_ts, False, {}, mgr.metrics
    )
    visitor.generic_visit(tree)
    if not code.isascii():  # the only whole-file check (trojansource) looks for bidi control characters
        visitor.context = {
            "file_data": visitor.fdata,
            "filename": visitor.fname,
            "lineno": 0,
            "linerange": [0, 1],
            "col_offset": 0,
        }
        visitor.update_scores(visitor.tester.run_tests(visitor.context, "File"))
    return [
        {
            "test_id": i.test_id,
            "severity": i.severity,
            "confidence": i.confidence,
            "line": i.lineno,
            "message": i.text,
        }
        for i in visitor.tester.results
    ]


def _python_signals_chunk(codes: list[str]) -> list[dict[str, Any]]:
    return [_python_signals(c) for c in codes]


_executor = None


def _process_pool(workers: int):
    """Kept across calls (spawning and importing bandit costs ~1 s); spawn, not fork: the caller may be a
    training process with threads and big libraries loaded."""
    global _executor
    if _executor is None or _executor._max_workers != workers:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if _executor is not None:
            _executor.shutdown()
        _executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        atexit.register(_executor.shutdown)
    return _executor


def _python_signals_parallel(codes: list[str], workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(codes) < PARALLEL_MIN_BATCH:
        return _python_signals_chunk(codes)
    size = -(-len(codes) // (workers * 4))  # several chunks per process evens out slow ones
    chunks = [codes[i : i + size] for i in range(0, len(codes), size)]
    return [r for part in _process_pool(workers).map(_python_signals_chunk, chunks) for r in part]


# -------------------------------------------------------------------------------------------- scoring
def _combine(signals: dict[str, Any], ruff_findings: list[dict], start: int) -> StaticResult:
    if "syntax_error" in signals:
        zero = {"syntax": 0.0, "lint": 0.0, "complexity": 0.0, "security": 0.0}
        return StaticResult(False, zero, {"ruff": [], "radon": [], "bandit": []}, signals["syntax_error"])
    lint_n = sum(2 if f["code"].startswith("F") else 1 for f in ruff_findings if f["line"] >= start)
    cc = [b["complexity"] for b in signals["radon"] if b["line"] >= start] or [1]
    weights = sum(SEVERITY_WEIGHTS.get(i["severity"], 0.1) for i in signals["bandit"] if i["line"] >= start)
    scores = {
        "syntax": 1.0,
        "lint": 1.0 / (1.0 + 0.25 * lint_n),
        "complexity": min(1.0, COMPLEXITY_TARGET / max(cc)),
        "security": 1.0 / (1.0 + weights),
    }
    findings = {"ruff": ruff_findings, "radon": signals["radon"], "bandit": signals["bandit"]}
    return StaticResult(True, scores, findings)


def severity_counts(result: StaticResult) -> dict[str, int]:
    """Bandit findings per severity, e.g. ``{"HIGH": 1, "LOW": 2}``."""
    counts: dict[str, int] = defaultdict(int)
    for issue in result.findings.get("bandit", []):
        counts[issue["severity"]] += 1
    return dict(counts)
