"""Task import: HumanEval, the basic suite, custom JSONL and datasets; idempotent, all-or-nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from codealign.errors import UserError
from codealign.tasks.custom import load_datasets_path, load_jsonl
from codealign.tasks.humaneval import load_humaneval
from db import migrate
from db.models import Task
from db.session import Database, session_scope
from db.tasks import import_tasks, task_counts


def _count(url, source):
    with session_scope(url) as s:
        return s.scalar(select(func.count()).select_from(Task).where(Task.source == source))


def test_humaneval_twice_without_duplicates(any_empty_db_url):
    migrate.upgrade(Database.at(any_empty_db_url))
    specs = load_humaneval()
    assert len(specs) == 164
    with session_scope(any_empty_db_url) as s:
        first = import_tasks(s, specs, "humaneval", created_by="cli:test")
    with session_scope(any_empty_db_url) as s:
        second = import_tasks(s, specs, "humaneval", created_by="cli:test")
    assert (first.added, second.added, second.unchanged) == (164, 0, 164)
    assert _count(any_empty_db_url, "humaneval") == 164


def test_humaneval_reference_passes_its_stored_test():
    spec = load_humaneval()[0]
    namespace: dict = {}
    exec(spec.prompt + spec.reference_solution + "\n" + spec.tests[0], namespace)  # noqa: S102 -- raises if check fails
    with pytest.raises(AssertionError):
        exec(spec.prompt + "    return not True if False else False\n" + spec.tests[0], {})  # noqa: S102


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = {
    "task_id": "c/0",
    "prompt": "def inc(x):\n",
    "entry_point": "inc",
    "tests": ["assert inc(1) == 2"],
    "reference_solution": "    return x + 1\n",
    "split": "train",
    "meta": {"family": "arith"},
}


def test_jsonl_import_and_update(db_url, tmp_path):
    rows = [GOOD, {**GOOD, "task_id": "c/1", "tests": None, "test": "def check(f):\n    assert f(2) == 3\n"}]
    specs = load_jsonl(_write_jsonl(tmp_path / "t.jsonl", rows))
    assert specs[1].tests == ["def check(f):\n    assert f(2) == 3\n\ncheck(inc)\n"]
    with session_scope(db_url) as s:
        assert import_tasks(s, specs, "custom", "cli:test").added == 2
    changed = load_jsonl(
        _write_jsonl(tmp_path / "t.jsonl", [{**GOOD, "tests": ["assert inc(0) == 1"]}, rows[1]])
    )
    with session_scope(db_url) as s:
        result = import_tasks(s, changed, "custom", "cli:test")
    assert (result.added, result.updated, result.unchanged) == (0, 1, 1)
    with session_scope(db_url) as s:
        assert s.scalar(select(Task.tests).where(Task.task_id == "c/0")) == ["assert inc(0) == 1"]
        assert task_counts(s) == [("custom", "train", 2)]


@pytest.mark.parametrize(
    "bad_line, field",
    [
        ('{"task_id": "c/9", "prompt": "def f():\\n", "entry_point": "f"}', "tests"),
        ('{"task_id": "c/9", "entry_point": "f", "tests": ["assert 1"]}', "prompt"),
        (
            '{"task_id": "c/9", "prompt": "x", "entry_point": "not an id", "tests": ["assert 1"]}',
            "entry_point",
        ),
        ('{"task_id": "c/9", "prompt": "x", "entry_point": "f", "tests": [], "split": "train"}', "tests"),
        ('{"task_id": "c/9", "prompt": "x", "entry_point": "f", "tests": ["a"], "split": "dev"}', "split"),
        ('{"task_id": "c/0", "prompt": "x", "entry_point": "f", "tests": ["a"]}', "duplicate task_id"),
        ("{not json", "invalid JSON"),
    ],
)
def test_malformed_line_names_file_line_field_and_imports_nothing(db_url, tmp_path, bad_line, field):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD, "", bad_line])
    with pytest.raises(UserError) as err:
        load_jsonl(path)
    message = str(err.value)
    assert str(path) in message and "line 3" in message and field in message
    assert _count(db_url, "bad") == 0


def test_cli_import_is_atomic_and_reports_errors(db_url, tmp_path, capsys):
    from alignment.cli import main

    bad = _write_jsonl(tmp_path / "mixed.jsonl", [GOOD, '{"task_id": "c/2"}'])
    assert main(["--db", db_url, "tasks", "import", "--jsonl", str(bad)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert _count(db_url, "mixed") == 0
    good = _write_jsonl(tmp_path / "good.jsonl", [GOOD])
    assert main(["--db", db_url, "tasks", "import", "--jsonl", str(good), "--source", "mine"]) == 0
    assert main(["--db", db_url, "tasks", "import", "--jsonl", str(good), "--source", "mine"]) == 0
    out = capsys.readouterr().out
    assert "1 added" in out and "1 unchanged" in out
    assert main(["--db", db_url, "tasks", "show", "c/0"]) == 0
    assert "assert inc(1) == 2" in capsys.readouterr().out


def test_datasets_directory_and_file(tmp_path):
    import datasets

    rows = [GOOD, {**GOOD, "task_id": "c/1"}]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    specs = load_datasets_path(tmp_path / "ds")
    assert [s.task_id for s in specs] == ["c/0", "c/1"] and specs[0].split == "train"
    specs = load_datasets_path(_write_jsonl(tmp_path / "t.jsonl", rows))
    assert len(specs) == 2
    datasets.Dataset.from_list([GOOD, {**GOOD, "entry_point": ""}]).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(UserError, match="row 1.*entry_point"):
        load_datasets_path(tmp_path / "bad")


def test_basic_suite_imports_idempotently(db_url):
    from alignment.cli import main

    assert main(["--db", db_url, "tasks", "import", "--suite", "basic"]) == 0
    first = {split: n for source, split, n in task_counts_for(db_url) if source == "basic"}
    assert first["train"] >= 2000 and first["test"] >= 200
    assert main(["--db", db_url, "tasks", "import", "--suite", "basic"]) == 0
    assert {split: n for source, split, n in task_counts_for(db_url) if source == "basic"} == first


def task_counts_for(url):
    with session_scope(url) as s:
        return task_counts(s)
