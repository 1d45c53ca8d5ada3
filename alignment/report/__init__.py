"""``codealign report --out DIR``: the page a reviewer opens, one HTML file with PNG plots, read from the DB.

What it answers, section by section:

* **pass@k per policy**, one table and plot per evaluation *setup* (dataset, split, number of tasks, n per
  task, temperature, top-p, max new tokens, seed, k set; :class:`~alignment.report.data.Setup`). Results of
  different setups are never compared, so a small ad-hoc eval (n=2, greedy) stands beside the canonical n=8
  one instead of replacing it; within a setup the latest result per policy counts. Rows: base/SFT first,
  the aligned policies, the control (stage ``control``, the control of its siblings: policies with the same
  parent) last and shaded. pass@1 carries a 95 % bootstrap interval over tasks; Δ vs the parent and vs the
  control is the paired difference over shared tasks, with its interval (:mod:`alignment.report.stats`:
  1,000 resamples, seeded, so the same DB gives the same page).
* **Lineage**: every policy with the policy it was trained from, the run, its data (from the run's config
  and counts), status, start, wall time (``finished_at - started_at``), trainer time (``train_runtime``),
  steps; runs that left no policy (failed, running) too.
* **Training curves**: one panel per (stage, metric), so no panel mixes scales.
* **PPO vs GRPO at equal sample budget**, **reward model** (held-out pairwise accuracy as
  ``alignment.reward_model`` logs it, ``held_out_accuracy``, with a Wilson interval over held-out pairs;
  older runs' ``eval_accuracy`` is read too), **human feedback** (people and simulated annotators, agreement,
  the reward model's held-out accuracy by verdict, readability-issue rates per policy:
  :mod:`alignment.report.feedback`), **reward breakdown** (execution verdicts, static scores).

Per-task counts come from ``EvalResult.per_task`` (stored by ``codealign eval --policy``). They are stored
rather than read from ``<samples>_results.jsonl`` because the report must work from the database alone: run
directories move between machines or get cleaned, and the next eval of the same policy and split rewrites
that file with other counts. For rows stored before the column existed the file is read when it still
matches the row (same tasks, n and pass@1); otherwise that row has no interval ("—").

Guarantees: self-contained output (``index.html`` + ``*.png`` in DIR, no CDN, no scripts); every string from
the DB is HTML-escaped; a section with no data says so instead of vanishing. Non-guarantee: an older report
in DIR is overwritten file by file, not cleared.

Examples::

    codealign report --out runs/report
    codealign --db sqlite:///team.db report --out /srv/www/codealign
"""

from __future__ import annotations

from alignment.report.data import ReportData, budget_note, collect
from alignment.report.page import write_report

__all__ = ["ReportData", "budget_note", "collect", "write_report"]
