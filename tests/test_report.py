"""``codealign report``: sections and plots from DB rows; escaped HTML; empty sections say so."""

from __future__ import annotations

import json

from alignment.cli import main
from alignment.report import budget_note, collect, write_report
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
    assert "No finished GRPO or PPO run yet." in page
    assert "report written to" in capsys.readouterr().out


def _fill_rl_runs(db_url) -> None:
    """SFT (pass@1 20 %) -> GRPO (4,096 completions, 25 %) and -> PPO (2,560 completions, 15 %), plus a failed PPO."""
    with session_scope(db_url) as session:
        sft = Policy(name="sft", checkpoint_path="/m/sft", stage="sft")
        session.add(sft)
        session.flush()
        grpo = TrainingRun(  # history as TRL logs it when read from trainer_state.json: steps only
            stage="grpo",
            status="completed",
            base_policy_id=sft.id,
            metrics={
                "num_completions": 4096,
                "global_step": 16,
                "train_runtime": 300.4,
                "log_history": [{"step": 8, "reward": 0.1}, {"step": 16, "reward": 0.4}],
            },
        )
        ppo = TrainingRun(
            stage="ppo",
            status="completed",
            base_policy_id=sft.id,
            metrics={
                "num_completions": 2560,
                "global_step": 80,
                "train_runtime": 512.0,
                "log_history": [
                    {"step": 1, "objective/scores": -0.4, "num_completions": 32},
                    {"step": 80, "objective/scores": -0.2, "num_completions": 2560},
                ],
            },
        )
        failed = TrainingRun(stage="ppo", status="failed", metrics={"num_completions": 64})
        session.add_all([grpo, ppo, failed])
        session.flush()
        results = []
        for name, run, pass1 in (("sft", None, 0.20), ("grpo-a", grpo, 0.25), ("ppo-a", ppo, 0.15)):
            policy = (
                sft
                if run is None
                else Policy(
                    name=name,
                    checkpoint_path=f"/m/{name}",
                    stage=run.stage,
                    parent_id=sft.id,
                    training_run_id=run.id,
                )
            )
            session.add(policy)
            session.flush()
            results.append(
                EvalResult(
                    policy_id=policy.id,
                    dataset="basic",
                    split="test",
                    n_samples=8,
                    num_tasks=200,
                    pass_at_k={"pass@1": pass1},
                )
            )
        session.add_all(results)


def test_ppo_vs_grpo_at_equal_sample_budget(db_url, tmp_path):
    _fill_rl_runs(db_url)
    with session_scope(db_url) as session:
        data = collect(session)
    rows = {r["method"]: r for r in data.budget}
    assert len(data.budget) == 2  # the failed run is left out
    assert (rows["grpo"]["budget"], rows["grpo"]["pass1"], rows["grpo"]["parent_pass1"]) == (4096, 0.25, 0.20)
    assert (rows["ppo"]["budget"], rows["ppo"]["seconds"], rows["ppo"]["parent"]) == (2560, 512.0, "sft")
    # GRPO's entries carry only the step: the budget is spread evenly over the 16 steps
    assert data.reward_by_budget == {
        "grpo #1": [(2048.0, 0.1), (4096.0, 0.4)],
        "ppo #2": [(32.0, -0.4), (2560.0, -0.2)],
    }
    assert budget_note(data.budget) == "budgets differ: ppo #2 2,560 vs grpo #1 4,096 completions"

    page = write_report(tmp_path / "report", db_url).read_text()
    section = page.split("<h2>PPO vs GRPO at equal sample budget</h2>")[1].split("<h2>")[0]
    assert (tmp_path / "report" / "reward_by_budget.png").stat().st_size > 1000
    assert "<td>4,096</td>" in section and "<td>2,560</td>" in section and "<td>300</td>" in section
    assert "<td>+5.0</td>" in section and "<td>-5.0</td>" in section  # Δ pass@1 in points against sft
    assert "budgets differ: ppo #2 2,560 vs grpo #1 4,096 completions" in section


def test_budgets_within_ten_percent_carry_no_note():
    rows = [
        {"method": "ppo", "run": "ppo #2", "budget": 3800},
        {"method": "grpo", "run": "grpo #1", "budget": 4096},
        {"method": "ppo", "run": "ppo #3", "budget": None},
    ]  # a run that predates num_completions
    assert budget_note(rows) == ""
