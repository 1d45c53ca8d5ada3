"""`codealign annotate`: item building, config errors, light imports for --help, and what serving prints."""

import subprocess
import sys

from alignment.cli import main
from annotation_ui.sample_data import seed_sample_data
from db.models import RankingItem
from db.session import session_scope


def test_build_only_creates_items_once(db_url, capsys):
    with session_scope(db_url) as s:
        seed_sample_data(s, tasks=3, per_policy=2)
    assert main(["--db", db_url, "annotate", "--build-only", "--config", "configs/annotate.yaml", "k=2"]) == 0
    assert "ranking item(s) of 2 completions (execution_ties_first)" in capsys.readouterr().out
    with session_scope(db_url) as s:
        items = s.query(RankingItem).all()
        assert items and all(len(i.completion_ids) == 2 and i.required_annotations == 3 for i in items)
        assert items[0].created_by.startswith("cli:")
    assert main(["--db", db_url, "annotate", "--build-only", "k=2"]) == 0
    assert "created 0 ranking item(s)" in capsys.readouterr().out


def test_build_only_passes_the_overlap_settings(db_url, capsys):
    with session_scope(db_url) as s:
        seed_sample_data(s, tasks=6, per_policy=2)
    args = ["annotate", "--build-only", "k=2", "required_annotations=1", "overlap_share=0.5"]
    assert main(["--db", db_url, *args, "overlap_annotations=4"]) == 0
    with session_scope(db_url) as s:
        needs = [i.required_annotations for i in s.query(RankingItem)]
    assert set(needs) == {1, 4} and needs.count(4) == round(len(needs) / 2)


def test_bad_config_is_one_line_error(db_url, capsys, tmp_path):
    assert main(["--db", db_url, "annotate", "--build-only", "k=9"]) == 2
    assert "k: must be between 2 and 8" in capsys.readouterr().err
    assert main(["--db", db_url, "annotate", "--build-only", "selection_policy=newest"]) == 2
    assert "selection_policy" in capsys.readouterr().err
    assert (
        main(["--db", db_url, "annotate", "--build-only", f"guidelines_file={tmp_path / 'missing.md'}"]) == 2
    )
    assert "guidelines_file: no such file" in capsys.readouterr().err
    assert main(["--db", db_url, "annotate", "--build-only", "overlap_share=2"]) == 2
    assert "overlap_share: must be from 0 to 1" in capsys.readouterr().err
    assert main(["--db", db_url, "annotate", "--build-only", "overlap_annotations=1"]) == 2
    assert "overlap_annotations: must be >= 2" in capsys.readouterr().err


def test_registering_the_commands_imports_nothing_heavy():
    code = (
        "import argparse, importlib, sys\n"
        "for name in ('users', 'annotate', 'export', 'compare'):\n"
        "    importlib.import_module(f'annotation_ui.commands.{name}').register(argparse.ArgumentParser())\n"
        "print(sorted(m for m in ('gradio', 'datasets', 'matplotlib', 'torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_busy_port_is_one_line_error(db_url, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--db", db_url, "annotate", "--no-build", "--port", str(port)]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serving_prints_the_url_and_no_share_link_advice(db_url, tmp_path):
    """`codealign annotate` as a user runs it: its log names the URL, never Gradio's `share=True` hint."""
    import os
    import selectors
    import time

    from annotation_ui.sample_data import free_port

    port = free_port()
    env = {**os.environ, "CODEALIGN_DB_URL": db_url, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "alignment.cli", "annotate", "--no-build", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = ""
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 120  # a generous cap against a hang, not a timing assertion
        while "serving on" not in log and proc.poll() is None and time.monotonic() < deadline:
            if selector.select(timeout=1):
                log += proc.stdout.readline()
    finally:
        proc.terminate()
        log += proc.communicate(timeout=60)[0]
    assert f"serving on http://127.0.0.1:{port}/" in log, log
    assert "share=True" not in log and "public link" not in log, log
