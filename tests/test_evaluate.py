"""Policy evaluation: stored completions are executed in the sandbox, pass@k is exact, results are stored."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from alignment.cli import main
from alignment.evaluation import EvalConfig, evaluate_policy, parse_ks
from alignment.generation import SamplingParams
from alignment.sample import resolve_policy
from codealign.errors import UserError
from codealign.tasks.basic import generate_suite
from db.models import Completion, EvalResult, Task
from db.tasks import import_tasks

PARAMS = SamplingParams(temperature=0.8, max_new_tokens=8, seed=0)


@pytest.fixture
def test_tasks(db):
    specs = [t for t in generate_suite(0) if t.split == "test"][:4]
    with db.session() as session:
        import_tasks(session, specs, source="basic", created_by="test")
    return specs


def test_pass_at_k_of_known_completions(db, test_tasks, tiny_model_dir, tmp_path):
    """Completions already stored under the sampling key are reused, so their verdicts are known."""
    wrong = "    return None\n"
    per_task = [[t.reference_solution] * 2 for t in test_tasks[:2]]
    per_task += [[test_tasks[2].reference_solution, wrong], [wrong, wrong]]
    with db.session() as session:
        policy = resolve_policy(session, str(tiny_model_dir), "test")
        rows = {r.task_id: r.id for r in session.scalars(select(Task))}
        for spec, texts in zip(test_tasks, per_task):
            session.add_all(
                Completion(
                    task_id=rows[spec.task_id],
                    policy_id=policy.id,
                    text=text,
                    sampling_key=PARAMS.key,
                    sampling_params=PARAMS.as_dict(),
                    sample_index=i,
                    created_by="test",
                )
                for i, text in enumerate(texts)
            )

    cfg = EvalConfig(
        dataset="basic",
        split="test",
        n=2,
        k=[1, 2],
        temperature=PARAMS.temperature,
        max_new_tokens=PARAMS.max_new_tokens,
        seed=PARAMS.seed,
        output_dir=str(tmp_path),
    )
    outcome = evaluate_policy(db, str(tiny_model_dir), cfg, created_by="test")
    assert outcome.pass_at_k == pytest.approx({"pass@1": (1 + 1 + 0.5 + 0) / 4, "pass@2": 3 / 4})
    assert outcome.num_tasks == 4 and outcome.verdicts.get("passed") == 5
    lines = [json.loads(line) for line in outcome.results_path.read_text().splitlines()]
    assert len(lines) == 8 and {"task_id", "completion", "result", "passed"} <= lines[0].keys()
    assert sum(line["passed"] for line in lines) == 5
    with db.session() as session:
        stored = session.get(EvalResult, outcome.eval_result_id)
        assert (stored.dataset, stored.split, stored.n_samples, stored.num_tasks) == ("basic", "test", 2, 4)
        assert stored.pass_at_k == outcome.pass_at_k and stored.policy_id == policy.id
        assert (
            session.scalar(select(Completion.id).where(Completion.sample_index > 1)) is None
        )  # nothing resampled


def test_cli_samples_for_real(db, test_tasks, tiny_model_dir, tmp_path, capsys):
    argv = ["--db", db.url, "eval", "--policy", str(tiny_model_dir), "--dataset", "basic", "--split", "test"]
    argv += ["--n", "2", "--k", "1,2,10", "--temperature", "1.0", "--max-new-tokens", "6"]
    assert main([*argv, "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "on basic/test: pass@1 " in out and "pass@2" in out and "(4 tasks x 2 samples)" in out
    assert "skipping k = 10" in out and "pass@10" not in out
    with db.session() as session:
        assert len(session.scalars(select(Completion)).all()) == 8
        assert len(session.scalars(select(EvalResult)).all()) == 1


def test_bad_k():
    assert parse_ks("4,1, 4") == [1, 4] and parse_ks([2]) == [2] and parse_ks(3) == [3]
    with pytest.raises(UserError, match="--k"):
        parse_ks("1,x")
    with pytest.raises(UserError, match="--k"):
        parse_ks("0")
    with pytest.raises(UserError, match="needs at least that many samples"):
        evaluate_policy(None, "whatever", EvalConfig(n=2, k=[4, 8]))


def test_cli_samples_at_temperature_when_n_above_one_and_limit_keeps_the_first_tasks(
    db, db_url, test_tasks, tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """The README's `eval --policy DIR --n 8 --k 1,4` as written: no --temperature means sampled, not greedy."""
    monkeypatch.chdir(tmp_path)
    base = ["--db", db_url, "eval", "--policy", str(tiny_model_dir), "--dataset", "basic", "--split", "test"]
    assert (
        main(["--db", db_url, *base, "--n", "2", "--k", "1,2", "--max-new-tokens", "6", "--limit", "3"]) == 0
    )
    assert "(3 tasks x 2 samples)" in capsys.readouterr().out
    assert main(["--db", db_url, *base, "--max-new-tokens", "6", "--k", "1"]) == 0  # n = 1: greedy by default
    with db.session() as session:
        sampled, greedy = session.scalars(select(EvalResult).order_by(EvalResult.id)).all()
    assert sampled.sampling_params["temperature"] == 0.8 and sampled.num_tasks == 3
    assert greedy.sampling_params["temperature"] == 0.0 and greedy.num_tasks == 4


def test_cli_refuses_greedy_with_several_samples(db_url, tiny_model_dir, capsys):
    args = ["--db", db_url, "eval", "--policy", str(tiny_model_dir), "--n", "8", "--temperature", "0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--temperature 0 (greedy) with --n 8" in err
    assert main(["--db", db_url, "eval", "--samples", "s.jsonl", "--limit", "3"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_a_directory_with_only_config_json_is_one_line_and_registers_nothing(
    db, db_url, tiny_model_dir, tmp_path, capsys
):
    import shutil

    from db.models import Policy, TrainingRun

    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(tiny_model_dir / "config.json", broken / "config.json")
    assert main(["--db", db_url, "eval", "--policy", str(broken), "--dataset", "basic", "--n", "1"]) == 2
    assert "no model weights in" in capsys.readouterr().err
    overrides = [
        f"model_name_or_path={broken}",
        f"output_dir={tmp_path / 'out'}",
        "tasks.load_from=generator",
    ]
    assert main(["--db", db_url, "train", "sft", "--config", "configs/sft.yaml", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_name_or_path: no model weights" in err
    with db.session() as session:
        assert (
            session.scalars(select(Policy)).all() == [] and session.scalars(select(TrainingRun)).all() == []
        )


def _tracked_policy(db, tiny_model_dir, store) -> str:
    """The tiny model registered as if a stage trained it with report_to: [mlflow] (its run in ``store``)."""
    from alignment import tracking
    from db.models import TrainingRun

    tracker = tracking.start_run(tracking.MlflowSettings(tracking_uri=str(store)), store, "sft", {})
    tracker.finish()
    with db.session() as session:
        run = TrainingRun(
            stage="sft",
            status="completed",
            metrics={"mlflow_run_id": tracker.run_id, "mlflow_tracking_uri": tracker.uri},
            created_by="test",
        )
        session.add(run)
        session.flush()
        resolve_policy(session, str(tiny_model_dir), "test").training_run_id = run.id
    return tracker.run_id


def test_eval_of_a_policy_trained_with_mlflow_joins_its_run(
    db, db_url, test_tasks, tiny_model_dir, tmp_path, capsys
):
    """`eval --policy` as the docs show it, on a tracked policy: eval/... metrics and the results file land
    in the stage's MLflow run (as the quickstart's evals do); an untracked policy logs nowhere."""
    from mlflow.tracking import MlflowClient

    from alignment.tracking import local_store

    base = ["--db", db_url, "eval", "--policy", str(tiny_model_dir), "--dataset", "basic", "--split", "test"]
    base += ["--max-new-tokens", "6", "--output-dir", str(tmp_path)]
    assert main([*base, "--n", "1"]) == 0
    assert "MLflow" not in capsys.readouterr().err  # not trained by a tracked stage: nothing to join
    run_id = _tracked_policy(db, tiny_model_dir, tmp_path / "store")
    assert main([*base, "--n", "2", "--k", "1,2"]) == 0
    err = capsys.readouterr().err
    assert f"logged to MLflow run {run_id}" in err
    client = MlflowClient(local_store(tmp_path / "store"))
    with db.session() as session:
        stored = session.scalars(select(EvalResult).order_by(EvalResult.id.desc())).first()
    metrics = client.get_run(run_id).data.metrics
    assert (
        metrics["eval/pass_at_1"] == pytest.approx(stored.pass_at_k["pass@1"]) and "eval/pass_at_2" in metrics
    )
    logged = [a.path for a in client.list_artifacts(run_id, "eval")]
    assert len(logged) == 1 and logged[0].endswith("_results.jsonl")


def test_eval_keeps_its_result_when_the_mlflow_store_is_gone(
    db, db_url, test_tasks, tiny_model_dir, tmp_path, capsys
):
    import shutil

    run_id = _tracked_policy(db, tiny_model_dir, tmp_path / "store")
    shutil.rmtree(tmp_path / "store")
    (tmp_path / "store").write_text("not a store")  # the directory is now a file: MLflow cannot open it
    args = ["--db", db_url, "eval", "--policy", str(tiny_model_dir), "--dataset", "basic", "--split", "test"]
    assert main([*args, "--n", "1", "--max-new-tokens", "4", "--output-dir", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("warning: eval not logged")]
    assert len(warning) == 1 and run_id in warning[0] and "Traceback" not in err
    with db.session() as session:
        assert len(session.scalars(select(EvalResult)).all()) == 1
