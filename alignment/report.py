"""``codealign report --out DIR``: one HTML page with PNG plots, read from the database.

Sections: pass@k per policy (latest ``EvalResult`` per policy, dataset, split and k), training curves (loss
and reward from each ``TrainingRun``'s logged history, else its ``trainer_state.json``), PPO vs GRPO at equal
sample budget (per finished run: completions sampled in training, seconds, pass@1 of the result and of its
parent on the same dataset/split, and mean training reward against completions sampled), reward-model pairwise
accuracy, and the reward breakdown (execution verdicts and mean static scores per policy). A section with no
data says so instead of vanishing.

Guarantees: self-contained output (``index.html`` + ``*.png`` in DIR, no CDN, no scripts); every string from
the DB is HTML-escaped. Non-guarantee: an older report in DIR is overwritten file by file, not cleared.

Examples::

    codealign report --out runs/report
    codealign --db sqlite:///team.db report --out /srv/www/codealign
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CURVE_KEYS = ("loss", "reward", "rewards/accuracies", "eval_accuracy", "kl", "objective/kl")
# The mean training reward each RL stage logs (both the weighted sum of its reward functions, before any KL).
RL_REWARD_KEYS = {"grpo": "reward", "ppo": "objective/scores"}
BUDGET_TOLERANCE = 0.10  # budgets further apart than this (relative to the smaller) are flagged


@dataclass
class ReportData:
    """Everything the report shows, read in one transaction (pure data: easy to test and to plot)."""

    pass_at_k: list[dict[str, Any]] = field(
        default_factory=list
    )  # policy, stage, dataset, split, k, value, n
    curves: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)  # run -> key -> pts
    reward_model: list[dict[str, Any]] = field(default_factory=list)  # run, policy, accuracy
    verdicts: dict[str, dict[str, int]] = field(default_factory=dict)  # policy -> verdict -> count
    static_means: dict[str, dict[str, float]] = field(default_factory=dict)  # policy -> signal -> mean
    # run, method, policy, parent, dataset, split, budget, seconds, pass1, parent_pass1 (None where unknown)
    budget: list[dict[str, Any]] = field(default_factory=list)
    # run -> (completions sampled so far, mean training reward)
    reward_by_budget: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _history(run) -> list[dict[str, Any]]:
    history = (run.metrics or {}).get("log_history")
    if history:
        return history
    state = Path(run.output_dir or "") / "trainer_state.json"
    if state.is_file():
        return json.loads(state.read_text()).get("log_history", [])
    return []


def collect(session) -> ReportData:
    from sqlalchemy import select

    from db.models import Completion, EvalResult, Execution, Policy, StaticScore, TrainingRun

    data = ReportData()
    policies = {p.id: p for p in session.scalars(select(Policy))}
    latest: dict[tuple, EvalResult] = {}
    for result in session.scalars(select(EvalResult).order_by(EvalResult.id)):
        latest[(result.policy_id, result.dataset, result.split)] = result
    for (policy_id, dataset, split), result in latest.items():
        policy = policies.get(policy_id)
        for key, value in sorted(result.pass_at_k.items()):
            data.pass_at_k.append(
                {
                    "policy": policy.name if policy else "?",
                    "stage": policy.stage if policy else "?",
                    "dataset": dataset,
                    "split": split,
                    "k": int(key.split("@")[1]),
                    "value": float(value),
                    "n": result.n_samples,
                    "tasks": result.num_tasks,
                }
            )

    for run in session.scalars(select(TrainingRun).order_by(TrainingRun.id)):
        label = f"{run.stage} #{run.id}"
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for entry in _history(run):
            step = entry.get("step", entry.get("epoch", 0))
            for key in CURVE_KEYS:
                if isinstance(entry.get(key), (int, float)):
                    series[key].append((float(step), float(entry[key])))
        if series:
            data.curves[label] = dict(series)
        accuracy = (run.metrics or {}).get(
            "eval_accuracy", (run.metrics or {}).get("heldout_pairwise_accuracy")
        )
        if run.stage == "reward" and isinstance(accuracy, (int, float)):
            data.reward_model.append({"run": label, "accuracy": float(accuracy)})
        if run.stage in RL_REWARD_KEYS and run.status == "completed":
            _collect_budget(data, run, label, policies, latest)

    rows = session.execute(
        select(Completion.policy_id, Execution.verdict).join(
            Execution, Execution.completion_id == Completion.id
        )
    )
    for policy_id, verdict in rows:
        name = policies[policy_id].name if policy_id in policies else "?"
        data.verdicts.setdefault(name, {}).setdefault(verdict, 0)
        data.verdicts[name][verdict] += 1
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = session.execute(
        select(Completion.policy_id, StaticScore.scores).join(
            StaticScore, StaticScore.completion_id == Completion.id
        )
    )
    for policy_id, scores in rows:
        name = policies[policy_id].name if policy_id in policies else "?"
        for signal, value in (scores or {}).items():
            if isinstance(value, (int, float)):
                sums[name][signal].append(float(value))
    data.static_means = {p: {s: sum(v) / len(v) for s, v in signals.items()} for p, signals in sums.items()}
    return data


def _collect_budget(data: ReportData, run, label: str, policies: dict, latest: dict) -> None:
    """One row per dataset/split the run's policy was evaluated on (one row without pass@1 when none)."""
    metrics = run.metrics or {}
    budget = metrics.get("num_completions")  # absent in runs recorded before it was logged
    policy = next((p for p in policies.values() if p.training_run_id == run.id), None)
    parent = policies.get(policy.parent_id if policy else run.base_policy_id)

    def pass1(who, dataset: str | None, split: str | None) -> float | None:
        result = latest.get((who.id, dataset, split)) if who else None
        return result.pass_at_k.get("pass@1") if result else None

    evaluated = sorted((dataset, split) for owner, dataset, split in latest if policy and owner == policy.id)
    for dataset, split in evaluated or [(None, None)]:
        data.budget.append(
            {
                "run": label,
                "method": run.stage,
                "policy": policy.name if policy else "?",
                "parent": parent.name if parent else "?",
                "dataset": dataset,
                "split": split,
                "budget": budget,
                "seconds": metrics.get("train_runtime"),
                "pass1": pass1(policy, dataset, split),
                "parent_pass1": pass1(parent, dataset, split),
            }
        )

    key = RL_REWARD_KEYS[run.stage]
    per_step = None  # entries logged before num_completions was: the budget grows linearly with the step
    if isinstance(budget, (int, float)) and metrics.get("global_step"):
        per_step = budget / metrics["global_step"]
    points = []
    for entry in _history(run):
        done = entry.get("num_completions", None if per_step is None else entry.get("step", 0) * per_step)
        if done is not None and isinstance(entry.get(key), (int, float)):
            points.append((float(done), float(entry[key])))
    if points:
        data.reward_by_budget[label] = points


def budget_note(rows: list[dict[str, Any]]) -> str:
    """``budgets differ: ...`` for every PPO/GRPO pair whose sample budgets differ by more than the tolerance."""
    budgets = {(r["method"], r["run"]): r["budget"] for r in rows if isinstance(r["budget"], (int, float))}
    pairs = [(p, g) for p in budgets if p[0] == "ppo" for g in budgets if g[0] == "grpo"]
    apart = [
        f"{p[1]} {budgets[p]:,} vs {g[1]} {budgets[g]:,}"
        for p, g in pairs
        if max(budgets[p], budgets[g]) > (1 + BUDGET_TOLERANCE) * min(budgets[p], budgets[g])
    ]
    return f"budgets differ: {'; '.join(apart)} completions" if apart else ""


# ---------------------------------------------------------------------------------------------- plots
def _save(fig, path: Path) -> bool:
    """Write ``fig`` as the section's PNG and free it; True, the plotters' "plotted" answer."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _plot_pass_at_k(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    groups = defaultdict(dict)
    for row in data.pass_at_k:
        groups[(row["dataset"], row["split"])][(row["policy"], row["k"])] = row["value"]
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, ((dataset, split), values) in zip(axes[0], sorted(groups.items())):
        names = sorted({p for p, _ in values})
        ks = sorted({k for _, k in values})
        width = 0.8 / len(ks)
        for i, k in enumerate(ks):
            ax.bar(
                [x + i * width for x in range(len(names))],
                [100 * values.get((n, k), 0) for n in names],
                width,
                label=f"pass@{k}",
            )
        ax.set_xticks(
            [x + width * (len(ks) - 1) / 2 for x in range(len(names))], names, rotation=20, ha="right"
        )
        ax.set_ylabel("%")
        ax.set_title(f"{dataset} / {split}")
        ax.legend()
    return _save(fig, path)


def _plot_curves(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    keys = sorted({key for series in data.curves.values() for key in series})
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for run, series in data.curves.items():
            if key in series:
                xs, ys = zip(*series[key])
                ax.plot(xs, ys, label=run)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_reward_by_budget(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not data.reward_by_budget:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for run, points in data.reward_by_budget.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker=".", label=run)
    ax.set_xlabel("completions sampled")
    ax.set_ylabel("mean training reward")
    ax.legend(fontsize=7)
    return _save(fig, path)


def _plot_verdicts(data: ReportData, path: Path) -> bool:
    import matplotlib.pyplot as plt

    if not data.verdicts:
        return False
    names = sorted(data.verdicts)
    verdicts = sorted({v for counts in data.verdicts.values() for v in counts})
    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(names)), 3.6))
    bottom = [0.0] * len(names)
    for verdict in verdicts:
        shares = [data.verdicts[n].get(verdict, 0) / max(1, sum(data.verdicts[n].values())) for n in names]
        ax.bar(names, shares, bottom=bottom, label=verdict)
        bottom = [b + s for b, s in zip(bottom, shares)]
    ax.set_ylabel("share of executed completions")
    ax.legend(fontsize=7)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- html
def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(title: str, image: str | None, table: str, empty: str) -> str:
    if image is None and not table:
        return f"<h2>{html.escape(title)}</h2><p class=empty>{html.escape(empty)}</p>"
    img = f'<img src="{image}" alt="{html.escape(title)}">' if image else ""
    return f"<h2>{html.escape(title)}</h2>{img}{table}"


def write_report(out_dir: str | Path, db_url: str | None = None) -> Path:
    """Write ``index.html`` and its PNGs to ``out_dir``; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    from db.session import session_scope

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with session_scope(db_url) as session:
        data = collect(session)

    sections = []
    plotted = _plot_pass_at_k(data, out / "pass_at_k.png")
    rows = [
        [
            r["policy"],
            r["stage"],
            f"{r['dataset']}/{r['split']}",
            f"pass@{r['k']}",
            f"{100 * r['value']:.1f}",
            r["n"],
            r["tasks"],
        ]
        for r in data.pass_at_k
    ]
    sections.append(
        _section(
            "pass@k per policy",
            "pass_at_k.png" if plotted else None,
            _table(["policy", "stage", "dataset", "k", "%", "n", "tasks"], rows) if rows else "",
            "No evaluation yet: run `codealign eval --policy DIR`.",
        )
    )
    plotted = _plot_curves(data, out / "training_curves.png")
    sections.append(
        _section(
            "Training curves",
            "training_curves.png" if plotted else None,
            "",
            "No training run with logged history yet.",
        )
    )
    sections.append(_budget_section(data, out))
    rows = [[r["run"], f"{100 * r['accuracy']:.1f}"] for r in data.reward_model]
    sections.append(
        _section(
            "Reward model: held-out pairwise accuracy",
            None,
            _table(["run", "accuracy %"], rows) if rows else "",
            "No reward-model run yet.",
        )
    )
    plotted = _plot_verdicts(data, out / "reward_breakdown.png")
    signals = sorted({s for means in data.static_means.values() for s in means})
    rows = [
        [p, *(f"{data.static_means[p].get(s, float('nan')):.2f}" for s in signals)]
        for p in sorted(data.static_means)
    ]
    sections.append(
        _section(
            "Reward breakdown: execution verdicts and static scores",
            "reward_breakdown.png" if plotted else None,
            _table(["policy", *signals], rows) if rows else "",
            "No scored completions yet.",
        )
    )

    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>codealign report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}img{max-width:100%}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        ".empty{color:#777}.note{color:#a40}</style></head><body><h1>codealign report</h1>"
        + "".join(sections)
        + "</body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _budget_section(data: ReportData, out: Path) -> str:
    def pct(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}"

    rows = [
        [
            r["method"],
            r["run"],
            r["policy"],
            r["parent"],
            f"{r['dataset']}/{r['split']}" if r["dataset"] else "—",
            "?" if r["budget"] is None else f"{r['budget']:,}",
            "?" if r["seconds"] is None else f"{r['seconds']:.0f}",
            pct(r["pass1"]),
            pct(r["parent_pass1"]),
            "—"
            if None in (r["pass1"], r["parent_pass1"])
            else f"{100 * (r['pass1'] - r['parent_pass1']):+.1f}",
        ]
        for r in data.budget
    ]
    table = (
        _table(
            [
                "method",
                "run",
                "policy",
                "parent",
                "dataset",
                "completions sampled",
                "train s",
                "pass@1 %",
                "parent pass@1 %",
                "Δ pass@1 pt",
            ],
            rows,
        )
        if rows
        else ""
    )
    note = budget_note(data.budget)
    plotted = _plot_reward_by_budget(data, out / "reward_by_budget.png")
    return _section(
        "PPO vs GRPO at equal sample budget",
        "reward_by_budget.png" if plotted else None,
        table + (f"<p class=note>{html.escape(note)}</p>" if note else ""),
        "No finished GRPO or PPO run yet.",
    )


def register(parser) -> None:
    parser.add_argument("--out", required=True, help="directory for index.html and the PNG plots")
    parser.set_defaults(func=_command)


def _command(args) -> int:
    print(f"report written to {write_report(args.out)}")
    return 0
