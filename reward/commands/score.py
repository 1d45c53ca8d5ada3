"""``codealign score``: execute and statically score the DB completions that have no result yet.

    codealign score                              # everything missing, all policies
    codealign score --policy sft-v1 --limit 500  # one policy, at most 500 completions
    codealign score --source humaneval --workers 4 --timeout 3

Writes one ``Execution`` and one ``StaticScore`` row per completion (``created_by`` = ``cli:USER@HOST``),
committing every ``--batch-size`` completions: an interrupted run keeps what it finished and a re-run scores
only what is missing. Warns on stderr when the sandbox cannot isolate fully.
"""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", help="only completions of this policy (by name)")
    parser.add_argument("--source", help="only tasks of this suite (e.g. humaneval, basic)")
    parser.add_argument("--limit", type=int, help="score at most this many completions")
    parser.add_argument("--workers", type=int, help="sandbox workers (default: CPU count + 1)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per program (default 5)")
    parser.add_argument("--memory-mb", type=int, default=512, help="memory cap per program (default 512)")
    parser.add_argument("--batch-size", type=int, default=256, help="completions per commit (default 256)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignment.errors import UserError

    for flag in ("limit", "workers", "batch_size", "memory_mb"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if args.timeout <= 0:
        raise UserError(f"--timeout must be positive, got {args.timeout}")

    from alignment.provenance import cli_actor
    from reward.scoring import ScoreOptions, score_missing

    options = ScoreOptions(
        policy=args.policy,
        source=args.source,
        limit=args.limit,
        workers=args.workers,
        timeout_s=args.timeout,
        memory_mb=args.memory_mb,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    summary = score_missing(options, created_by=cli_actor(), warn=lambda msg: print(msg, file=sys.stderr))
    print(summary.line())
    return 0
