"""The CLI contract: instant --help, one-line usage/config errors with exit code 2, --debug tracebacks."""

from __future__ import annotations

import subprocess
import sys

from alignment.cli import COMMANDS, build_parser, main

HEAVY = ("torch", "transformers", "trl", "gradio", "datasets", "deepspeed", "peft", "accelerate")


def test_help_path_imports_nothing_heavy():
    code = (
        f"import sys, alignment.cli as c; c.build_parser(); print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_command_has_help(capsys):
    parser = build_parser()
    names = [name for name, _, _ in COMMANDS]
    assert {"db", "tasks"} <= set(names)
    for name in names:
        try:
            parser.parse_args([name, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        assert name in capsys.readouterr().out


def test_console_script_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "alignment.cli", "--help"], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0 and "tasks" in result.stdout


def test_usage_error_is_one_line_exit_2(capsys):
    assert main(["tasks", "import", "--suite", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice" in err and "Traceback" not in err
    assert main(["no-such-command"]) == 2


def test_user_error_one_line_and_debug_shows_traceback(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'nodir' / 'x.db'}"
    assert main(["--db", missing, "db", "current"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codealign: error:") and err.count("\n") == 1
    result = subprocess.run(
        [sys.executable, "-m", "alignment.cli", "--debug", "--db", missing, "db", "current"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_db_commands(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["--db", url, "db", "upgrade"]) == 0
    assert main(["--db", url, "db", "current"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["--db", url, "db", "downgrade", "--revision", "base"]) == 0
    assert "(empty)" in capsys.readouterr().out
