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


def test_unknown_database_type_is_one_line(capsys):
    assert main(["--db", "bogus://x", "db", "current"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codealign: error:") and err.count("\n") == 1 and "bogus://x" in err


def test_a_missing_sqlite_file_is_refused_and_not_created(tmp_path, capsys):
    missing = tmp_path / "nope.db"
    assert main(["--db", f"sqlite:///{missing}", "tasks", "list"]) == 2
    assert "codealign db upgrade" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["--db", f"sqlite:///{missing}", "db", "upgrade"]) == 0 and missing.is_file()


def test_output_into_a_closed_pipe_is_not_a_traceback(tmp_path):
    """`codealign tasks show ID | head`: the reader leaves early."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    run = [sys.executable, "-m", "alignment.cli", "--db", url]
    subprocess.run([*run, "db", "upgrade"], check=True, capture_output=True)
    subprocess.run([*run, "tasks", "import", "--suite", "humaneval"], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*run, "tasks", "list", "--limit", "164"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # nobody reads: the first flush hits EPIPE
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 1 and "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_tasks_list_says_when_it_stops_and_counts_have_a_header_and_total(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["--db", url, "db", "upgrade"]) == 0
    assert main(["--db", url, "tasks", "import", "--suite", "humaneval"]) == 0
    capsys.readouterr()
    assert main(["--db", url, "tasks", "list"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 20 and "20 of 164 tasks shown" in captured.err
    assert main(["--db", url, "tasks", "list", "--counts"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["source", "split", "tasks"] and lines[-1].split() == ["total", "164"]


def test_train_usage_is_readable(capsys):
    try:
        build_parser().parse_args(["train", "--help"])
    except SystemExit:
        pass
    usage = capsys.readouterr().out.split("\n\n")[0]
    assert usage.startswith("usage: codealign train STAGE --config FILE.yaml [KEY=VALUE ...]")
    assert "[FILE.yaml [key=value ...] ...]" not in usage
