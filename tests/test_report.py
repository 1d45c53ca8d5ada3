"""``codealign report``: sections and plots from DB rows; escaped HTML; empty sections say so."""

from __future__ import annotations

import json

from alignment.cli import main
from alignment.report import collect, write_report
from db.models import Completion, EvalResult, Execution, Policy, StaticScore, Task, TrainingRun
from db.session import session_scope


def _fill(db_url, tmp_path):
    with session_scope(db_url) as session:
        task = Task(
            task_id="t/1",
            source="basic",
            split="test",
            prompt="def f():\n",
            entry_point="f",
            tests=[],
            content_hash="x",
        )
        run = TrainingRun(
            stage="dpo",
            status="completed",
            output_dir=str(tmp_path / "dpo"),
            metrics={"log_history": [{"step": 5, "loss": 0.7}, {"step": 10, "loss": 0.5}]},
        )
        state_run = TrainingRun(
            stage="grpo", status="completed", output_dir=str(tmp_path / "grpo"), metrics={}
        )
        rm_run = TrainingRun(stage="reward", status="completed", metrics={"eval_accuracy": 0.75})
        session.add_all([task, run, state_run, rm_run])
        session.flush()
        sft = Policy(name="sft", checkpoint_path="/m/sft", stage="sft")
        evil = Policy(
            name="<script>alert(1)</script>", checkpoint_path="/m/dpo", stage="dpo", training_run_id=run.id
        )
        session.add_all([sft, evil])
        session.flush()
        session.add_all(
            [
                EvalResult(
                    policy_id=sft.id,
                    dataset="basic",
                    split="test",
                    n_samples=8,
                    num_tasks=200,
                    pass_at_k={"pass@1": 0.1, "pass@4": 0.3},
                ),
                EvalResult(
                    policy_id=sft.id,
                    dataset="basic",
                    split="test",
                    n_samples=8,
                    num_tasks=200,
                    pass_at_k={"pass@1": 0.2, "pass@4": 0.4},
                ),  # the latest one counts
                EvalResult(
                    policy_id=evil.id,
                    dataset="basic",
                    split="test",
                    n_samples=8,
                    num_tasks=200,
                    pass_at_k={"pass@1": 0.5},
                ),
            ]
        )
        for i, verdict in enumerate(["passed", "failed", "passed"]):
            completion = Completion(task_id=task.id, policy_id=sft.id, text="    pass\n", sample_index=i)
            session.add(completion)
            session.flush()
            session.add(Execution(completion_id=completion.id, verdict=verdict, isolation="full"))
            session.add(StaticScore(completion_id=completion.id, syntax_ok=True, scores={"lint": i / 2}))
    (tmp_path / "grpo").mkdir()
    history = {
        "log_history": [{"step": 1, "reward": 0.1, "loss": 0.0}, {"step": 2, "reward": 0.4, "loss": 0.0}]
    }
    (tmp_path / "grpo" / "trainer_state.json").write_text(json.dumps(history))


def test_collect_reads_every_section(db_url, tmp_path):
    _fill(db_url, tmp_path)
    with session_scope(db_url) as session:
        data = collect(session)
    sft_rows = {r["k"]: r["value"] for r in data.pass_at_k if r["policy"] == "sft"}
    assert sft_rows == {1: 0.2, 4: 0.4}
    assert data.curves["dpo #1"]["loss"] == [(5.0, 0.7), (10.0, 0.5)]
    assert data.curves["grpo #2"]["reward"] == [(1.0, 0.1), (2.0, 0.4)]  # from trainer_state.json
    assert data.reward_model == [{"run": "reward #3", "accuracy": 0.75}]
    assert data.verdicts == {"sft": {"passed": 2, "failed": 1}}
    assert data.static_means == {"sft": {"lint": 0.5}}


def test_report_html_and_plots(db_url, tmp_path):
    _fill(db_url, tmp_path)
    index = write_report(tmp_path / "report", db_url)
    page = index.read_text()
    for png in ("pass_at_k.png", "training_curves.png", "reward_breakdown.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
        assert f'src="{png}"' in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "75.0" in page  # reward-model accuracy


def test_empty_database_report_says_so(db_url, tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert "No evaluation yet" in page and "No training run" in page and "No scored completions" in page
    assert "report written to" in capsys.readouterr().out
