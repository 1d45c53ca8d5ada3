"""The quickstart's result: one row per policy (the ``quickstart.json`` contract) and the table printed from it.

A row: ``policy``, ``pass@k`` (0-1) for each k, ``delta_pass@1`` (vs SFT), ``reward_signals`` (what trained it:
``["execution"]``, ``["execution", "human"]``, ``[]``), ``readability_win_rate`` (0-1, a fresh panel's blind
verdict against SFT's sample of the same task and index; ties half) and ``readability_win_ci`` ([lo, hi]),
``readability_win_rate_both_pass``, ``readability_issue_rate`` / ``readability_issue_rate_passing`` (share of
samples with a readability issue, over all and over passing samples), ``train_s``, ``eval_s``, ``tasks``.
"""

from __future__ import annotations

from typing import Any

from alignment.quickstart.config import REWARD_SIGNALS


def result_rows(trained: dict, evaluated: dict) -> list[dict[str, Any]]:
    rows = []
    for name, record in trained.items():
        info = evaluated[name].info
        metrics = info.get("metrics") or {}
        win = info.get("win")
        rows.append(
            {
                "policy": name,
                **info["pass_at_k"],
                "reward_signals": REWARD_SIGNALS[name],
                "readability_win_rate": win["rate"] if win else None,
                "readability_win_ci": [win["low"], win["high"]] if win else None,
                "readability_win_rate_both_pass": win["rate_both_pass"] if win else None,
                "readability_issue_rate": metrics.get("readability_issue_rate"),
                "readability_issue_rate_passing": metrics.get("readability_issue_rate_passing"),
                "mean_lines": metrics.get("mean_lines"),
                "tasks": info["tasks"],
                "train_s": record.seconds,
                "eval_s": evaluated[name].seconds,
            }
        )
    for row in rows:
        row["delta_pass@1"] = row["pass@1"] - rows[0]["pass@1"]
    return rows


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def format_table(rows: list[dict[str, Any]], stages: list, total: float, cfg, summary: dict[str, Any]) -> str:
    ks = [f"pass@{k}" for k in cfg.eval_ks]
    header = [
        "policy",
        "signals",
        *ks,
        "Δ pass@1",
        "win vs SFT [95% CI]",
        "issues all / passing",
        "train s",
        "eval s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        win = row["readability_win_rate"]
        win_cell = (
            "—"
            if win is None
            else f"{win:.2f} [{row['readability_win_ci'][0]:.2f}, {row['readability_win_ci'][1]:.2f}]"
        )
        cells = [
            row["policy"],
            "+".join(row["reward_signals"]) or "—",
            *(_pct(row.get(k)) for k in ks),
            "—" if row["policy"] == "sft" else _pct(row["delta_pass@1"], signed=True),
            win_cell,
            f"{_pct(row['readability_issue_rate'])} / {_pct(row['readability_issue_rate_passing'])}",
            f"{row['train_s']:.0f}",
            f"{row['eval_s']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    tasks = rows[0]["tasks"] if rows else 0
    timing = ", ".join(f"{r.name} {r.seconds:.0f}s" + ("*" if r.reused else "") for r in stages)
    rm, panel = summary.get("reward_model"), summary.get("panel") or {}
    lines += [
        "",
        (
            f"basic/{cfg.eval_split}: {tasks} held-out tasks, {cfg.eval_n} samples each at T={cfg.eval_temperature}"
            " (pass@k and issue rates in %; win rate: a fresh simulated panel, blind, ties half)"
        ),
    ]
    if panel:
        lines.append(
            f"panel: {panel.get('annotators')} simulated annotators, {panel.get('items')} items ranked, "
            f"alpha {_fmt(panel.get('alpha'))}, tau-b {_fmt(panel.get('tau_b'))}"
        )
    if rm:
        lines.append(
            f"reward model: {rm['pairs']} pairs, held-out accuracy {_fmt(rm['heldout_accuracy'])} "
            f"(same verdict {_fmt(rm['heldout_accuracy_same_verdict'])}, "
            f"across verdicts {_fmt(rm['heldout_accuracy_different_verdict'])})"
        )
    lines += [
        f"stage wall times: {timing}",
        f"total: {total:.0f} s"
        + (" (* = reused from an earlier run)" if any(r.reused for r in stages) else ""),
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
