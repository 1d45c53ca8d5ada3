"""The report's HTML: one static page, every DB string escaped, every section present (empty ones say so)."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

from alignment.report import plots
from alignment.report.data import Comparison, Delta, ReportData, budget_note, collect
from alignment.report.feedback import collect_feedback
from alignment.report.stats import LEVEL, RESAMPLES, Estimate

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1240px;margin:1.5em auto;padding:0 1em;color:#222;"
    "line-height:1.4}img{max-width:100%;display:block;margin:.6em 0}h2{margin-top:1.8em;"
    "border-bottom:2px solid #ddd;padding-bottom:.2em}h3{margin:1.4em 0 .3em;font-size:1.05em}"
    "table{border-collapse:collapse;margin:.6em 0 1em;font-size:14px}"
    "td,th{border:1px solid #ccc;padding:4px 9px;text-align:right;vertical-align:top}td{white-space:nowrap}"
    ".l6 td:nth-child(5){white-space:normal}"
    "th{background:#f2f2f2}tr.control td{background:#fff4dc;font-style:italic}"
    + "".join(f".l{n} :is(td,th):nth-child(-n+{n}){{text-align:left}}" for n in range(1, 7))
    + ".empty{color:#777}.note{color:#a40}.meta,.legend{color:#555;font-size:14px}"
)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _interval(estimate: Estimate | None, signed: bool = False) -> str:
    """``12.5 [9.0, 16.0]`` in percent (points when signed); ``—`` for the part that is unknown."""
    if estimate is None:
        return "—"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    text = fmt.format(100 * estimate.value)
    if estimate.low is not None:
        text += f" [{fmt.format(100 * estimate.low)}, {fmt.format(100 * estimate.high)}]"
    return text


def _delta(delta: Delta | None) -> str:
    return "—" if delta is None else _interval(delta.estimate, signed=True)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _when(value: dt.datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M")


def _table(
    header: list[str], rows: list[list[Any]], left: int = 1, row_classes: list[str] | None = None
) -> str:
    """A table whose first ``left`` columns are text (left-aligned); every cell is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        (f'<tr class="{cls}">' if cls else "<tr>")
        + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        + "</tr>"
        for row, cls in zip(rows, row_classes or [""] * len(rows))
    )
    return f'<table class="l{left}"><tr>{head}</tr>{body}</table>'


def _section(title: str, image: str | None, table: str, empty: str) -> str:
    if image is None and not table:
        return f"<h2>{html.escape(title)}</h2><p class=empty>{html.escape(empty)}</p>"
    img = f'<img src="{image}" alt="{html.escape(title)}">' if image else ""
    return f"<h2>{html.escape(title)}</h2>{img}{table}"


# ------------------------------------------------------------------------------------------- sections
def _results_section(data: ReportData, out: Path) -> str:
    if not data.comparisons:
        return _section(
            "pass@k per policy", None, "", "No evaluation yet: run `codealign eval --policy DIR`."
        )
    level = f"{100 * LEVEL:.0f} %"
    parts = [
        "<h2>pass@k per policy</h2>",
        "<p class=legend>"
        + html.escape(
            f"One table per evaluation setup: results of different setups are never compared. Within a setup "
            f"the latest result of each policy counts. Brackets: {level} bootstrap interval over tasks "
            f"({RESAMPLES:,} resamples, seeded); a Δ is the paired difference in pass@1 points over the tasks "
            "both were evaluated on. The control (SFT trained further on reference solutions) is shaded: a "
            "gain that does not beat it is not an alignment gain. BLEU and exact match (of the samples against "
            "the reference solutions) and perplexity (the policy's, per token of the reference solutions) are "
            "secondary signals: closeness to one reference, not correctness; pass@k is the measure."
        )
        + "</p>",
    ]
    for number, comparison in enumerate(data.comparisons, start=1):
        image = f"pass_at_k_{number}.png"
        plotted = plots.plot_comparison(comparison, out / image)
        parts.append(f"<h3>Setup {number}: {html.escape(comparison.setup.label())}</h3>")
        if plotted:
            parts.append(f'<img src="{image}" alt="pass@k, setup {number}">')
        parts.append(_comparison_table(comparison))
    return "".join(parts)


def _comparison_table(comparison: Comparison) -> str:
    ks = [k for k in comparison.setup.ks if k != 1]
    rows = [
        [
            r.policy,
            r.stage,
            r.parent or "—",
            _interval(r.pass1),
            *(pct(r.pass_at_k.get(k)) for k in ks),
            _delta(r.vs_parent),
            _delta(r.vs_control),
            *_secondary(r.metrics),
            f"#{r.result_id} {_when(r.evaluated_at)}",
        ]
        for r in comparison.rows
    ]
    ci = f"[{100 * LEVEL:.0f} % CI]"
    header = [
        "policy",
        "stage",
        "trained from",
        f"pass@1 % {ci}",
        *(f"pass@{k} %" for k in ks),
        f"Δ pass@1 vs parent, pt {ci}",
        f"Δ pass@1 vs control, pt {ci}",
        *SECONDARY_HEADER,
        "eval result (UTC)",
    ]
    classes = ["control" if r.is_control else "" for r in comparison.rows]
    return _table(header, rows, left=3, row_classes=classes)


SECONDARY_HEADER = ("BLEU", "exact match %", "perplexity")


def _secondary(metrics: dict[str, Any]) -> list[str]:
    """The secondary signals of a result (``—`` where not measured: results stored before they were)."""
    bleu, ppl = metrics.get("bleu"), metrics.get("perplexity")
    return [
        "—" if bleu is None else f"{bleu:.1f}",
        pct(metrics.get("exact_match")),
        "—" if ppl is None else f"{ppl:.3g}",
    ]


def _lineage_section(data: ReportData) -> str:
    rows = [
        [
            r.policy or "(no policy)",
            r.stage,
            r.parent or "—",
            r.run or "—",
            r.data,
            r.status or "—",
            _when(r.started_at),
            duration(r.wall_s),
            duration(r.train_s),
            "—" if r.steps is None else f"{r.steps:,}",
        ]
        for r in data.lineage
    ]
    header = ["policy", "stage", "trained from", "run", "data", "status", "started (UTC)", "wall time"]
    classes = ["control" if r.stage == "control" else "" for r in data.lineage]
    table = _table([*header, "trainer time", "steps"], rows, left=6, row_classes=classes) if rows else ""
    return _section(
        "Lineage: what was trained from what, on which data, how long", None, table, "No policy yet."
    )


def _budget_section(data: ReportData, out: Path) -> str:
    rows = [
        [
            r["method"],
            r["run"],
            r["policy"],
            r["parent"],
            f"{r['setup'].dataset}/{r['setup'].split}, n = {r['setup'].n}" if r["setup"] else "—",
            "?" if r["budget"] is None else f"{r['budget']:,}",
            duration(r["seconds"]) if isinstance(r["seconds"], (int, float)) else "?",
            pct(r["pass1"]),
            pct(r["parent_pass1"]),
            "—"
            if None in (r["pass1"], r["parent_pass1"])
            else f"{100 * (r['pass1'] - r['parent_pass1']):+.1f}",
        ]
        for r in data.budget
    ]
    header = ["method", "run", "policy", "parent", "setup", "completions sampled", "trainer time", "pass@1 %"]
    table = _table([*header, "parent pass@1 %", "Δ pass@1 pt"], rows, left=5) if rows else ""
    note = budget_note(data.budget)
    plotted = plots.plot_reward_by_budget(data, out / "reward_by_budget.png")
    return _section(
        "PPO vs GRPO at equal sample budget",
        "reward_by_budget.png" if plotted else None,
        table + (f"<p class=note>{html.escape(note)}</p>" if note else ""),
        "No finished GRPO or PPO run yet.",
    )


def _reward_model_section(data: ReportData) -> str:
    rows = [
        [
            r["run"],
            r["policy"] or "—",
            r["parent"] or "—",
            _interval(r["accuracy"]),
            pct(r["train_accuracy"]) if isinstance(r["train_accuracy"], (int, float)) else "—",
            "—" if r["pairs"] is None else f"{r['pairs']:,}",
            "—" if r["held_out"] is None else f"{r['held_out']:,}",
            duration(r["seconds"]) if isinstance(r["seconds"], (int, float)) else "—",
        ]
        for r in data.reward_model
    ]
    header = ["run", "policy", "trained from", "held-out accuracy % [95 % Wilson CI]", "train accuracy %"]
    table = _table([*header, "train pairs", "held-out pairs", "trainer time"], rows, left=3) if rows else ""
    if rows:
        table += (
            "<p class=legend>Pairwise accuracy: share of pairs whose chosen completion scores above the "
            "rejected one; held-out pairs come from tasks the reward model never trained on (50 % is chance). "
            "The interval treats pairs as independent.</p>"
        )
    return _section("Reward model: held-out pairwise accuracy", None, table, "No reward-model run yet.")


def _feedback_section(data: ReportData, feedback: dict[str, Any]) -> str:
    """People and panel, agreement, the reward model by verdict, readability per policy (alignment.report.feedback)."""
    title = "<h2>Human feedback: rankings, agreement, readability</h2>"
    if not feedback["rankings"]:
        return title + "<p class=empty>No rankings yet (codealign annotate, or codealign panel).</p>"

    def num(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    people, simulated = feedback["people"], feedback["simulated"]
    who = _table(
        ["who", "annotators", "rankings"],
        [["people", people[0], people[1]], ["simulated panel", simulated[0], simulated[1]]],
    )
    agree = (
        f"<p>Items: {feedback['items_complete']:,} of {feedback['items_total']:,} fully ranked; "
        f"{feedback['shared_items']:,} ranked by two or more annotators. Agreement on those: mean Kendall "
        f"τ-b {html.escape(num(feedback['tau_b']))}, Krippendorff's α (ordinal) "
        f"{html.escape(num(feedback['alpha']))}.</p>"
    )
    rm_rows = [
        [r["run"], r["policy"] or "—", pct(r.get("same_verdict")), pct(r.get("different_verdict"))]
        for r in data.reward_model
    ]
    reward = (
        _table(
            ["reward-model run", "policy", "held-out acc. same verdict %", "different verdict %"],
            rm_rows,
            left=2,
        )
        + "<p class=legend>Same verdict: both programs pass or both fail — the judgment only people add; "
        "across verdicts execution already decides.</p>"
        if rm_rows
        else ""
    )
    readable = ""
    if data.comparisons:
        rows = [
            [
                r.policy,
                pct(r.metrics.get("readability_issue_rate")),
                pct(r.metrics.get("readability_issue_rate_passing")),
                num(r.metrics.get("mean_lines"), 1),
            ]
            for r in data.comparisons[0].rows
        ]
        readable = _table(
            [
                "policy",
                "samples with a readability issue %",
                "passing samples with one %",
                "lines per sample",
            ],
            rows,
        ) + (
            "<p class=legend>Readability issues: reward/readability.py (ruff rules, vulture, small AST checks); "
            f"setup: {html.escape(data.comparisons[0].setup.label())}.</p>"
        )
    return title + who + agree + reward + readable


def _breakdown_section(data: ReportData, out: Path) -> str:
    order = [r.policy for r in data.lineage if r.policy]
    names = [n for n in order if n in data.verdicts] + sorted(set(data.verdicts) - set(order))
    plotted = plots.plot_verdicts(data, names, out / "reward_breakdown.png")
    signals = sorted({s for means in data.static_means.values() for s in means})
    scored = [n for n in order if n in data.static_means] + sorted(set(data.static_means) - set(order))
    rows = [[p, *(f"{data.static_means[p].get(s, float('nan')):.2f}" for s in signals)] for p in scored]
    return _section(
        "Reward breakdown: execution verdicts and static scores",
        "reward_breakdown.png" if plotted else None,
        _table(["policy", *signals], rows) if rows else "",
        "No scored completions yet.",
    )


def write_report(out_dir: str | Path, db) -> Path:
    """Write ``index.html`` and its PNGs to ``out_dir``; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with db.session() as session:
        data = collect(session)
        feedback = collect_feedback(session)

    plotted = plots.plot_curves(data, out / "training_curves.png")
    sections = [
        _results_section(data, out),
        _lineage_section(data),
        _section(
            "Training curves (one panel per stage and metric)",
            "training_curves.png" if plotted else None,
            "",
            "No training run with logged history yet.",
        ),
        _budget_section(data, out),
        _reward_model_section(data),
        _feedback_section(data, feedback),
        _breakdown_section(data, out),
    ]
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = (
        f"Generated {generated} from {db}: {sum(1 for r in data.lineage if r.policy)} "
        f"policies, {sum(1 for r in data.lineage if r.run)} training runs, {len(data.comparisons)} evaluation "
        "setup(s)."
    )
    page = (
        "<!doctype html><html><head><meta charset=utf-8><title>codealign report</title>"
        f"<style>{CSS}</style></head><body><h1>codealign report</h1><p class=meta>{html.escape(meta)}</p>"
        + "".join(sections)
        + "</body></html>"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
