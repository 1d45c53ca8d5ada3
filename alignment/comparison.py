"""Blind win rate of a policy against a baseline (SFT), judged by a fresh simulated panel.

Each sample of the candidate meets the baseline's sample of the same task and index (both from an evaluation
with the same setup); one member of a *fresh* panel (:class:`annotation_ui.panel.PanelConfig` with another
``seed`` than the panel whose rankings trained the reward model) judges the pair blind: 1 for the candidate, 0
for the baseline, 0.5 for a tie. The win rate is the mean over tasks of each task's mean, with a seeded
bootstrap interval over tasks (:func:`alignment.report.stats.bootstrap_mean`).

The judge sees what an annotator sees: the verdict (pass or fail, from the results file), the code, and the
readability issues in its own lines (:mod:`reward.readability`). Non-guarantee: a simulated judge; its
numbers are stated as such. Most fail-vs-fail pairs are decided by readability and length only, so the
rate is also given over pairs where both pass.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from annotation_ui.panel import PanelConfig, judge
from annotation_ui.views import CompletionView

FRESH_PANEL_SEED = 1_000  # the judging panel's seed: not the seed of the panel that ranked for training


@dataclass(frozen=True)
class WinRate:
    rate: float
    low: float
    high: float
    pairs: int
    rate_both_pass: float | None  # over pairs where both samples pass (None: no such pair)


def _samples(results_path: str | Path) -> dict[tuple[str, int], dict]:
    rows = {}
    index_of: dict[str, int] = defaultdict(int)
    for line in Path(results_path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        index = row.get("sample_index", index_of[row["task_id"]])
        index_of[row["task_id"]] += 1
        rows[(row["task_id"], int(index))] = row
    return rows


def blind_win_rate(
    candidate_results: str | Path, baseline_results: str | Path, prompts: dict[str, str], panel: PanelConfig
) -> WinRate:
    """See the module docstring; ``prompts`` maps task ids to prompts (for the issues' line numbers)."""
    from alignment.report.stats import bootstrap_mean
    from reward.readability import readability_issues

    cand, base = _samples(candidate_results), _samples(baseline_results)
    keys = sorted(cand.keys() & base.keys())
    if not keys:
        raise ValueError("blind_win_rate: the two evaluations share no (task, sample) pair")
    rows = [r for key in keys for r in (cand[key], base[key])]
    issues = readability_issues(
        [prompts[r["task_id"]] + r["completion"] for r in rows],
        [prompts[r["task_id"]].count("\n") + 1 for r in rows],
    )
    views = [
        CompletionView(
            0,
            "?",
            r["completion"],
            "passed" if r["passed"] else "failed",
            int(bool(r["passed"])),
            1,
            static_findings={"readability": [i.as_dict() for i in found]},
        )
        for r, found in zip(rows, issues)
    ]
    rng = random.Random(f"{panel.seed}/win-rate")
    per_task: dict[str, list[float]] = defaultdict(list)
    both_pass = []
    for n, key in enumerate(keys):
        a, b = views[2 * n], views[2 * n + 1]
        score = judge(a, b, panel, panel.noise[n % len(panel.noise)], rng)
        per_task[key[0]].append(score)
        if a.verdict == b.verdict == "passed":
            both_pass.append(score)
    estimate = bootstrap_mean([sum(v) / len(v) for v in per_task.values()])
    return WinRate(
        rate=estimate.value,
        low=estimate.low,
        high=estimate.high,
        pairs=len(keys),
        rate_both_pass=sum(both_pass) / len(both_pass) if both_pass else None,
    )


def fresh_panel(base: PanelConfig | None = None) -> PanelConfig:
    """The judging panel: the training panel's rubric with another noise seed."""
    from dataclasses import replace

    return replace(base or PanelConfig(), seed=FRESH_PANEL_SEED)
