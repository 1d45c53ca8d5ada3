"""``codealign benchmark`` (``make benchmark``): the full, honest table — every method, several seeds.

The quickstart's recipe (:mod:`alignment.quickstart`) once per seed, each in its own directory and its own
SQLite database (``<output_dir>/seed-<s>/``: panels and reward models of different seeds never share
rankings), with the stages ``sft, reward_model, dpo, grpo_exec, grpo, ppo, control``. ``benchmark.json`` has
the quickstart's row fields as means over seeds, each numeric one with a 95 % t-interval over seeds
(``<field>_ci``; with 3 seeds a wide one — the seed-to-seed spread is the point), ``per_seed`` ({seed:
pass@1}) per row, top-level ``seeds`` and the means of the reward model's and the panel's figures. A seed
that finished is reused on a rerun (the quickstart resumes its stages).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codealign.errors import UserError

STAGES = ["sft", "reward_model", "dpo", "grpo_exec", "grpo", "ppo", "control"]
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class BenchmarkConfig:
    output_dir: str = "runs/benchmark"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    quickstart_config: str = "configs/quickstart.yaml"
    quickstart: dict[str, Any] = field(default_factory=lambda: {"stages": list(STAGES), "report": False})

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds: give distinct seeds, got {self.seeds}")


def mean_ci(values: list[float]) -> tuple[float, list[float] | None]:
    """Mean and its 95 % t-interval over the values (None for a single value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    half = _T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, [mean - half, mean + half]


def run_benchmark(cfg: BenchmarkConfig) -> dict[str, Any]:
    from alignment.quickstart import QuickstartConfig, run_quickstart
    from codealign.config import load_config, merge_dicts
    from db.session import Database

    started = time.monotonic()
    out = Path(cfg.output_dir).resolve()
    results = {}
    for seed in cfg.seeds:
        where = out / f"seed-{seed}"
        where.mkdir(parents=True, exist_ok=True)
        overrides = merge_dicts(cfg.quickstart, {"seed": seed, "output_dir": str(where)})
        qs = load_config(QuickstartConfig, cfg.quickstart_config, overrides)
        print(f"[benchmark] seed {seed} -> {where}", flush=True)
        results[seed] = run_quickstart(qs, Database.at(f"sqlite:///{where / 'codealign.db'}")).summary
    summary = aggregate(results)
    summary["total_seconds"] = time.monotonic() - started
    (out / "benchmark.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "table.md").write_text(format_benchmark(summary) + "\n")
    return summary


def aggregate(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per-seed quickstart summaries -> the benchmark's means (see the module docstring)."""
    seeds = sorted(results)
    names = [row["policy"] for row in results[seeds[0]]["rows"]]
    rows = []
    for name in names:
        per_seed = {s: next(r for r in results[s]["rows"] if r["policy"] == name) for s in seeds}
        first = per_seed[seeds[0]]
        row: dict[str, Any] = {"policy": name, "reward_signals": first["reward_signals"]}
        # every numeric field of any seed, kept (as None) where no seed has a value: e.g. the issue rate among
        # passing samples of a policy that passed nothing
        numeric = [
            k
            for k in dict.fromkeys(k for s in seeds for k in per_seed[s])
            if k not in ("readability_win_rate", "readability_win_ci")
            and all(_is_number(per_seed[s].get(k)) or per_seed[s].get(k) is None for s in seeds)
        ]
        for key in numeric:
            values = [per_seed[s][key] for s in seeds if _is_number(per_seed[s].get(key))]
            row[key], row[f"{key}_ci"] = mean_ci(values) if values else (None, None)
        wins = [
            per_seed[s]["readability_win_rate"]
            for s in seeds
            if per_seed[s].get("readability_win_rate") is not None
        ]
        row["readability_win_rate"], row["readability_win_ci"] = mean_ci(wins) if wins else (None, None)
        row["per_seed"] = {str(s): per_seed[s]["pass@1"] for s in seeds}
        rows.append(row)

    def means(section: str) -> dict[str, Any] | None:
        parts = [results[s].get(section) for s in seeds if results[s].get(section)]
        if not parts:
            return None
        keys = [k for k, v in parts[0].items() if _is_number(v)]
        return {k: statistics.fmean(p[k] for p in parts if p.get(k) is not None) for k in keys}

    return {
        "seeds": seeds,
        "rows": rows,
        "reward_model": means("reward_model"),
        "panel": means("panel"),
        "setup": results[seeds[0]].get("setup"),
        # a reused stage keeps the seconds it took when it ran, so the sum is each seed's compute even where a
        # rerun took none of it; the wall time of this invocation is the top level's total_seconds
        "seconds_per_seed": {
            str(s): round(sum(r["seconds"] for r in results[s].get("stages", [])), 1) for s in seeds
        },
        "wall_seconds_per_seed": {str(s): results[s]["total_seconds"] for s in seeds},
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_benchmark(summary: dict[str, Any]) -> str:
    def pct(value, signed=False):
        return "—" if value is None else (f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}")

    def ci(interval, scale=100, digits=1):
        return (
            "" if not interval else f" [{scale * interval[0]:.{digits}f}, {scale * interval[1]:.{digits}f}]"
        )

    control = next((r["pass@1"] for r in summary["rows"] if r["policy"] == "control"), None)
    header = (
        "| policy | signals | pass@1 % (95% CI over seeds) | Δ vs SFT | Δ vs control | per seed | win vs SFT "
        "| issues all / passing % | train s |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        seeds = " / ".join(f"{100 * v:.1f}" for v in row["per_seed"].values())
        win = row.get("readability_win_rate")
        train_s = "—" if row.get("train_s") is None else f"{row['train_s']:.0f}"
        vs_control = (
            None if control is None or row["policy"] in ("sft", "control") else row["pass@1"] - control
        )
        lines.append(
            f"| {row['policy']} | {'+'.join(row['reward_signals']) or '—'} | {pct(row['pass@1'])}{ci(row.get('pass@1_ci'))} "
            f"| {'—' if row['policy'] == 'sft' else pct(row['delta_pass@1'], True)} | {pct(vs_control, True)} "
            f"| {seeds} | {'—' if win is None else f'{win:.2f}'}{ci(row.get('readability_win_ci'), 1, 2)} "
            f"| {pct(row.get('readability_issue_rate'))} / {pct(row.get('readability_issue_rate_passing'))} "
            f"| {train_s} |"
        )
    per_seed = ", ".join(f"seed {s} {v:.0f} s" for s, v in summary.get("seconds_per_seed", {}).items())
    lines.append(
        f"\nseeds {summary['seeds']}; stage time per seed (reused stages at the time they took): {per_seed}; "
        f"this run's wall time {summary.get('total_seconds', 0):.0f} s"
    )
    return "\n".join(lines)
