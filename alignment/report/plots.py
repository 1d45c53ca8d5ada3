"""The report's PNGs (matplotlib, Agg). Each plotter returns False when it has nothing to draw.

Rule: one panel never mixes scales: pass@k (%) and gains (points) get their own panels, and each training
curve panel holds one metric of one stage.
"""

from __future__ import annotations

import math
from pathlib import Path

from alignment.report.data import Comparison, ReportData, stage_rank

DPI = 100
CURVE_COLUMNS = 3


def _save(fig, path: Path) -> bool:
    """Write ``fig`` as the section's PNG and free it; True, the plotters' "plotted" answer."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return True


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def plot_comparison(comparison: Comparison, path: Path) -> bool:
    """pass@k bars (pass@1 with its interval; the control hatched) and, beside them, pass@1 gains."""
    import matplotlib.pyplot as plt

    rows = comparison.rows
    if not rows:
        return False
    gains = [r for r in rows if r.vs_parent or r.vs_control]
    ks = comparison.setup.ks
    # sized to be shown at ~1,200 px without scaling the text down
    widths = [min(7.5, max(4.0, 0.5 + len(rows) * (0.6 + 0.25 * len(ks))))] + ([4.5] if gains else [])
    fig, axes = plt.subplots(
        1, len(widths), figsize=(sum(widths) + 1.0, 4.2), squeeze=False, gridspec_kw={"width_ratios": widths}
    )
    ax = axes[0][0]
    width = 0.8 / len(ks)
    for i, k in enumerate(ks):
        xs = [x + i * width for x in range(len(rows))]
        heights = [100 * r.pass_at_k.get(k, 0.0) for r in rows]
        bars = ax.bar(xs, heights, width, label=f"pass@{k}", color=f"C{i}")
        for bar, row in zip(bars, rows):
            if row.is_control:
                bar.set_hatch("//")
                bar.set_edgecolor("black")
        if k == 1:
            for x, row in zip(xs, rows):
                if row.pass1 and row.pass1.low is not None:
                    value = 100 * row.pass1.value
                    ax.errorbar(
                        x,
                        value,
                        yerr=[[value - 100 * row.pass1.low], [100 * row.pass1.high - value]],
                        color="black",
                        capsize=4,
                        lw=1.2,
                    )
    ax.set_xticks(
        [x + width * (len(ks) - 1) / 2 for x in range(len(rows))],
        [_short(r.policy) + ("\n(control)" if r.is_control else "") for r in rows],
        rotation=15,
        ha="right",
    )
    ax.set_ylabel("% of tasks")
    ax.set_ylim(0, min(100, max(5.0, 1.1 * max(100 * max(r.pass_at_k.values(), default=0) for r in rows))))
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: bars reach 100 %
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("pass@k (pass@1 with its 95 % interval)")
    if gains:
        _plot_gains(axes[0][1], gains)
    return _save(fig, path)


def _plot_gains(ax, rows) -> None:
    labels = []
    for y, row in enumerate(reversed(rows)):
        labels.append(_short(row.policy))
        for delta, offset, marker, color, name in (
            (row.vs_parent, 0.15, "o", "C0", "vs parent"),
            (row.vs_control, -0.15, "s", "C3", "vs control"),
        ):
            if delta is None:
                continue
            value = 100 * delta.estimate.value
            err = None
            if delta.estimate.low is not None:
                err = [[value - 100 * delta.estimate.low], [100 * delta.estimate.high - value]]
            ax.errorbar(value, y + offset, xerr=err, fmt=marker, color=color, capsize=4, label=name)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Δ pass@1, points (95 % paired bootstrap interval)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=9, loc="best")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("gain in pass@1")


def plot_curves(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    panels = sorted(data.curves.items(), key=lambda item: (stage_rank(item[0][0]), item[0]))
    if not panels:
        return False
    columns = min(CURVE_COLUMNS, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.3 * columns, 3.2 * lines), squeeze=False)
    for ax, ((stage, key), series) in zip(axes.flat, panels):
        for label, points in series.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, label=_short(label, 34), marker="." if len(xs) < 20 else None)
        ax.set_title(f"{stage} · {key}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_reward_by_budget(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not data.reward_by_budget:
        return False
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for run, points in data.reward_by_budget.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker=".", label=run)
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("mean training reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_verdicts(data: ReportData, names: list[str], path: Path) -> bool:
    """Stacked share of each execution verdict, one bar per policy in ``names`` order."""
    import matplotlib.pyplot as plt

    if not data.verdicts:
        return False
    verdicts = sorted({v for counts in data.verdicts.values() for v in counts})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(names) + 2), 3.8))
    bottom = [0.0] * len(names)
    for verdict in verdicts:
        shares = [data.verdicts[n].get(verdict, 0) / max(1, sum(data.verdicts[n].values())) for n in names]
        ax.bar(range(len(names)), shares, bottom=bottom, label=verdict)
        bottom = [b + s for b, s in zip(bottom, shares)]
    ax.set_xticks(range(len(names)), [_short(n) for n in names], rotation=15, ha="right")
    ax.set_ylabel("share of executed completions")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)
