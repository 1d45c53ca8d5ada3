"""``codealign compare``: the reviewer-arena leaderboard in the terminal and as a PNG.

Bradley-Terry ratings with bootstrap 95% intervals, next to each policy's execution pass rate on the arena
split. Examples::

    codealign compare
    codealign compare --png runs/arena.png bootstrap_rounds=1000 arena_split=test
"""

from __future__ import annotations

import argparse

from codealign.flags import add_overrides


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=None, help="YAML for AnnotateConfig (arena_split, bootstrap_rounds)"
    )
    parser.add_argument("--png", default="arena_leaderboard.png", help="where to write the plot")
    add_overrides(parser)
    parser.set_defaults(run=_compare)


def _compare(args, db) -> int:
    from annotation_ui.arena import format_leaderboard, leaderboard, plot_leaderboard
    from annotation_ui.config import AnnotateConfig
    from codealign.config import load_config
    from codealign.errors import UserError

    cfg = load_config(AnnotateConfig, args.config, args.overrides)
    with db.session() as session:
        rows = leaderboard(session, split=cfg.arena_split, rounds=cfg.bootstrap_rounds, seed=cfg.seed)
    if not rows:
        raise UserError("no arena votes yet: reviewers vote in the Arena tab of `codealign annotate`")
    print(format_leaderboard(rows))
    plot_leaderboard(rows, args.png)
    print(f"plot: {args.png}")
    return 0
