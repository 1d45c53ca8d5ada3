"""``codealign score``: execute and statically score the DB completions that have no result yet.

    codealign score                              # everything missing, all policies
    codealign score --policy sft-v1 --limit 500  # one policy, at most 500 completions
    codealign score --source humaneval --workers 4 --timeout 3

Writes one ``Execution`` and one ``StaticScore`` row per completion (``created_by`` = ``cli:USER@HOST``),
committing every ``--batch-size`` completions: an interrupted run keeps what it finished and a re-run scores
only what is missing. Warns on stderr when the sandbox cannot isolate fully. The flags set
:class:`~reward.scoring.ScoreOptions` fields.
"""

from __future__ import annotations

import argparse
import sys

from codealign.flags import Flag

FLAGS = [
    Flag("--policy", "policy", "only completions of this policy (by name)", metavar="NAME"),
    Flag("--source", "source", "only tasks of this suite (e.g. humaneval, basic)", metavar="SUITE"),
    Flag("--limit", "limit", "score at most this many completions", metavar="N"),
    Flag("--workers", "workers", "sandbox workers (default: CPU count + 1)", metavar="N"),
    Flag("--timeout", "timeout_s", "seconds per program", metavar="S"),
    Flag("--memory-mb", "memory_mb", "memory cap per program", metavar="MB"),
    Flag("--batch-size", "batch_size", "completions per commit", metavar="N"),
    Flag.switch("--no-progress", "progress", "no progress bar", False),
]


def register(parser: argparse.ArgumentParser) -> None:
    from codealign.flags import add_config_arguments
    from reward.scoring import ScoreOptions

    add_config_arguments(parser, ScoreOptions, FLAGS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, db) -> int:
    from codealign.flags import config_from_args
    from codealign.provenance import cli_actor
    from reward.scoring import ScoreOptions, score_missing

    options = config_from_args(ScoreOptions, args, FLAGS)
    summary = score_missing(options, cli_actor(), lambda msg: print(msg, file=sys.stderr), db=db)
    print(summary.line())
    return 0
