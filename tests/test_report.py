"""``codealign report``: sections and plots from DB rows; escaped HTML; empty sections say so.

Setups are never mixed (issue #11 item 4), the reward-model section reads what a real run logs (item 5), and
a realistic DB (a real tiny SFT run, a real tiny reward-model run, a real eval, synthetic aligned policies)
renders in chromium.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest

from alignment.cli import main
from alignment.report import budget_note, collect, write_report
from alignment.report.stats import Estimate, bootstrap_mean, paired_difference, wilson
from db.models import Completion, EvalResult, Execution, Policy, StaticScore, Task, TrainingRun
from db.session import Database, session_scope
from reward.passk import mean_pass_at_k

CHROMIUM = "/usr/bin/chromium"


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
        canonical = {"dataset": "basic", "split": "test", "n_samples": 8, "num_tasks": 200}
        session.add_all(
            [
                EvalResult(policy_id=sft.id, **canonical, pass_at_k={"pass@1": 0.1, "pass@4": 0.3}),
                EvalResult(
                    policy_id=sft.id, **canonical, pass_at_k={"pass@1": 0.2, "pass@4": 0.4}
                ),  # latest counts
                EvalResult(policy_id=evil.id, **canonical, pass_at_k={"pass@1": 0.5, "pass@4": 0.7}),
                EvalResult(
                    policy_id=sft.id,
                    dataset="<i>data</i>",
                    split="test",
                    n_samples=1,
                    num_tasks=3,
                    pass_at_k={"pass@1": 0.9},
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
    basic, other = data.comparisons  # two setups: the one with two policies first
    assert [(r.policy, r.pass_at_k) for r in basic.rows] == [
        ("sft", {1: 0.2, 4: 0.4}),  # the latest of sft's two results; SFT sorts first
        ("<script>alert(1)</script>", {1: 0.5, 4: 0.7}),
    ]
    assert basic.rows[1].vs_parent is None  # no lineage recorded: no Δ
    assert [(r.policy, r.pass_at_k) for r in other.rows] == [("sft", {1: 0.9})]
    assert data.curves[("dpo", "loss")] == {"<script>alert(1)</script> (dpo #1)": [(5.0, 0.7), (10.0, 0.5)]}
    assert data.curves[("grpo", "reward")] == {"grpo #2": [(1.0, 0.1), (2.0, 0.4)]}  # from trainer_state.json
    assert [(r["run"], r["accuracy"]) for r in data.reward_model] == [("reward #3", Estimate(0.75))]
    assert data.verdicts == {"sft": {"passed": 2, "failed": 1}}
    assert data.static_means == {"sft": {"lint": 0.5}}


def test_report_html_and_plots(db_url, tmp_path):
    _fill(db_url, tmp_path)
    index = write_report(tmp_path / "report", Database.at(db_url))
    page = index.read_text()
    for png in ("pass_at_k_1.png", "pass_at_k_2.png", "training_curves.png", "reward_breakdown.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000
        assert f'src="{png}"' in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>" not in page and "&lt;i&gt;data&lt;/i&gt;/test" in page  # a dataset name from the DB
    assert "75.0" in page  # reward-model accuracy


def test_empty_database_report_says_so(db_url, tmp_path, capsys):
    assert main(["--db", db_url, "report", "--out", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "index.html").read_text()
    assert "No evaluation yet" in page and "No training run" in page and "No scored completions" in page
    assert "No finished GRPO or PPO run yet." in page and "No reward-model run yet." in page
    assert "No policy yet." in page
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

    page = write_report(tmp_path / "report", Database.at(db_url)).read_text()
    section = page.split("<h2>PPO vs GRPO at equal sample budget</h2>")[1].split("<h2>")[0]
    assert (tmp_path / "report" / "reward_by_budget.png").stat().st_size > 1000
    assert "<td>4,096</td>" in section and "<td>2,560</td>" in section and "<td>5 min 00 s</td>" in section
    assert "<td>+5.0</td>" in section and "<td>-5.0</td>" in section  # Δ pass@1 in points against sft
    assert "budgets differ: ppo #2 2,560 vs grpo #1 4,096 completions" in section


def test_budgets_within_ten_percent_carry_no_note():
    rows = [
        {"method": "ppo", "run": "ppo #2", "budget": 3800},
        {"method": "grpo", "run": "grpo #1", "budget": 4096},
        {"method": "ppo", "run": "ppo #3", "budget": None},
    ]  # a run that predates num_completions
    assert budget_note(rows) == ""


def _rows(fragment: str) -> list[list[str]]:
    """The cells of every table row in an HTML fragment, unescaped (header rows left out)."""
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", fragment)]
    return [[html.unescape(cell) for cell in row] for row in rows if row]


CANONICAL = {"temperature": 0.8, "top_p": 1.0, "max_new_tokens": 96, "seed": 0, "batch_size": 64}


def test_an_adhoc_eval_does_not_replace_the_canonical_result(db_url, tmp_path):
    """Issue #11 item 4: an n=2 greedy eval of SFT, stored last, used to replace its n=8 result."""
    canonical = {"dataset": "basic", "split": "test", "n_samples": 8, "num_tasks": 200}
    with session_scope(db_url) as session:
        sft = Policy(name="sft", checkpoint_path="/m/sft", stage="sft")
        session.add(sft)
        session.flush()
        dpo = Policy(name="dpo", checkpoint_path="/m/dpo", stage="dpo", parent_id=sft.id)
        session.add(dpo)
        session.flush()
        session.add_all(
            [
                EvalResult(
                    policy_id=sft.id, **canonical, sampling_params=CANONICAL, pass_at_k={"pass@1": 0.2}
                ),
                EvalResult(
                    policy_id=dpo.id, **canonical, sampling_params=CANONICAL, pass_at_k={"pass@1": 0.3}
                ),
                EvalResult(
                    policy_id=sft.id,
                    **{**canonical, "n_samples": 2},
                    sampling_params={**CANONICAL, "temperature": 0.0},
                    pass_at_k={"pass@1": 0.55},
                ),
            ]
        )
    page = write_report(tmp_path / "report", Database.at(db_url)).read_text()
    sft_cells = [cells for cells in _rows(page) if cells[0] == "sft"]
    assert any("20.0" in cells for cells in sft_cells)  # the canonical result is still shown
    assert any("55.0" in cells for cells in sft_cells)  # ... and so is the ad-hoc one, in its own table
    canonical_table = page.split("<h3>Setup 1: ")[1].split("<h3>")[0]
    assert canonical_table.startswith("basic/test · 200 tasks · n = 8 per task · T = 0.8 · top-p 1 ·")
    assert "≤ 96 new tokens · seed 0 · k ∈ {1}" in canonical_table
    dpo_row = next(cells for cells in _rows(canonical_table) if cells[0] == "dpo")
    assert dpo_row[2:5] == ["sft", "30.0", "+10.0"]  # Δ against SFT's n=8 result, never its n=2 one
    adhoc = page.split("<h3>Setup 2: ")[1]
    assert adhoc.startswith("basic/test · 200 tasks · n = 2 per task · T = 0 (greedy)")
    assert [cells[0] for cells in _rows(adhoc.split("</table>")[0])] == ["sft"]


def test_intervals_are_seeded_and_paired():
    values = [random.Random(i).random() for i in range(50)]
    first, again = bootstrap_mean(values), bootstrap_mean(values)
    assert first == again and first.low < first.value < first.high
    assert bootstrap_mean([0.25] * 10) == Estimate(0.25, 0.25, 0.25)
    # a constant gain on every task has no spread, however much the tasks differ
    a = {f"t{i}": v for i, v in enumerate(values)}
    b = {t: v - 0.1 for t, v in a.items()}
    (gain, tasks) = paired_difference(a, {**b, "only-b": 0.0})
    assert (
        tasks == 50
        and gain.value == pytest.approx(0.1)
        and gain.high - gain.low == pytest.approx(0, abs=1e-12)
    )
    assert paired_difference(a, {"other": 1.0}) is None
    interval = wilson(0.5, 100)
    assert (round(interval.low, 3), round(interval.high, 3)) == (0.404, 0.596)
    assert wilson(0.0, 10).low == pytest.approx(0, abs=1e-12) and wilson(1.0, 0) == Estimate(1.0)


# --------------------------------------------------------------------------- a realistic database
SKILLS = {"qs-sft": 0.20, "qs-dpo": 0.27, "qs-grpo": 0.31, "qs-ppo": 0.22, "qs-control": 0.21}


def _synthetic_counts(skill: float, seed: int, tasks: int = 200, n: int = 8) -> dict[str, tuple[int, int]]:
    """Per-task (n, c) where every policy meets the same task difficulties (so paired differences pair)."""
    rng = random.Random(seed)
    counts = {}
    for i in range(tasks):
        p = min(1.0, max(0.0, skill + 0.8 * (0.5 - random.Random(i).random())))
        counts[f"basic/test/{i:03d}"] = (n, sum(rng.random() < p for _ in range(n)))
    return counts


def _history(key: str, start: float, end: float, steps: int, **extra) -> list[dict]:
    return [
        {"step": s, key: start + (end - start) * s / steps, **{k: f(s) for k, f in extra.items()}}
        for s in range(1, steps + 1)
    ]


def _add_aligned_policies(url: str, sft_id: int, sft_loss: float) -> None:
    """DPO, GRPO, PPO and the control from SFT, with their runs, and every policy's canonical eval."""
    start = dt.datetime(2025, 1, 6, 9, 0)
    prompts = {"tasks": {"dataset": "basic", "splits": ["pool"]}, "reward_funcs": ["execution"]}
    pairs = {"pairs": {"source": "execution", "dataset": "basic", "splits": ["pool"], "policies": ["qs-sft"]}}
    curves = {
        "dpo": _history("loss", 0.69, 0.41, 12, **{"rewards/accuracies": lambda s: 0.5 + 0.03 * s}),
        "grpo": _history("reward", 0.18, 0.34, 20, loss=lambda s: 0.002 * (s % 3)),
        "ppo": _history("objective/scores", -0.6, -0.2, 16, **{"objective/kl": lambda s: 0.01 * s}),
        "control": _history("loss", sft_loss, 0.9 * sft_loss, 12),
    }
    for entry in curves["ppo"]:
        entry["num_completions"] = 384 * entry["step"]
    runs = {  # policy -> (policy stage, run stage, minutes, config, metrics)
        "qs-dpo": ("dpo", "dpo", 4, pairs, {"num_pairs": 1840, "global_step": 60}),
        "qs-grpo": (
            "grpo",
            "grpo",
            11,
            prompts,
            {"num_prompts": 600, "num_completions": 6400, "global_step": 200},
        ),
        "qs-ppo": (
            "ppo",
            "ppo",
            14,
            prompts,
            {"num_prompts": 600, "num_completions": 6144, "global_step": 96},
        ),
        "qs-control": (
            "control",
            "sft",
            2,
            {"tasks": {"dataset": "basic", "splits": ["train"]}},
            {"num_examples": 2261, "global_step": 60},
        ),
    }
    with session_scope(url) as session:
        ids = {"qs-sft": sft_id}
        for offset, (name, (stage, run_stage, minutes, config, metrics)) in enumerate(runs.items()):
            began = start + dt.timedelta(minutes=20 * offset)
            run = TrainingRun(
                stage=run_stage,
                status="completed",
                config=config,
                metrics={**metrics, "train_runtime": 60.0 * minutes - 7, "log_history": curves[stage]},
                base_policy_id=sft_id,
                started_at=began,
                finished_at=began + dt.timedelta(minutes=minutes),
            )
            session.add(run)
            session.flush()
            policy = Policy(
                name=name, checkpoint_path=f"/m/{name}", stage=stage, parent_id=sft_id, training_run_id=run.id
            )
            session.add(policy)
            session.flush()
            ids[name] = policy.id
        session.add(
            TrainingRun(
                stage="ppo",
                status="failed",
                base_policy_id=sft_id,
                error="OOM",
                started_at=start,
                finished_at=start + dt.timedelta(seconds=40),
            )
        )
        for seed, (name, skill) in enumerate(SKILLS.items()):
            counts = _synthetic_counts(skill, seed)
            session.add(
                EvalResult(
                    policy_id=ids[name],
                    dataset="basic",
                    split="test",
                    n_samples=8,
                    num_tasks=200,
                    sampling_params=CANONICAL,
                    pass_at_k=mean_pass_at_k(counts.values(), [1, 4, 8]),
                    per_task={t: list(c) for t, c in counts.items()},
                    created_by="test",
                )
            )


@pytest.fixture(scope="module")
def realistic(tmp_path_factory, tiny_model_dir):
    """A real tiny SFT run, a real tiny reward-model run from it, a real eval of SFT on 4 tasks (n=2), and
    synthetic DPO/GRPO/PPO/control policies with runs and canonical evals (200 tasks, n=8)."""
    from _train_helpers import TINY_RUN, seed_scored_tasks

    from alignment.evaluation import EvalConfig, evaluate_policy
    from alignment.reward_model import RewardModelRecipeConfig
    from alignment.reward_model import train as train_reward_model
    from alignment.sft import SFTRecipeConfig
    from alignment.sft import train as train_sft
    from codealign.config import load_config
    from db.migrate import upgrade
    from db.session import dispose_engines

    root = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{root / 'report.db'}"
    db = Database.at(url)
    upgrade(db)
    seed_scored_tasks(url, n_tasks=12, splits=("train", "test"))
    common = {**TINY_RUN, "learning_rate": 1e-2}
    sft = train_sft(
        load_config(
            SFTRecipeConfig,
            None,
            {
                **common,
                "model_name_or_path": str(tiny_model_dir),
                "output_dir": str(root / "sft"),
                "policy_name": "qs-sft",
                "tasks": {"load_from": "generator", "limit": 16},
            },
        ),
        db,
    )
    rm = train_reward_model(
        load_config(
            RewardModelRecipeConfig,
            None,
            {
                **common,
                "model_name_or_path": sft.output_dir,
                "output_dir": str(root / "rm"),
                "policy_name": "qs-rm",
                "max_steps": 3,
                "eval_fraction": 0.25,
                "pairs": {"splits": ["train"]},
            },
        ),
        db,
    )
    setup = EvalConfig(
        dataset="basic",
        split="test",
        n=2,
        k=[1, 2],
        temperature=0.8,
        max_new_tokens=8,
        limit=4,
        output_dir=str(root / "eval"),
        progress=False,
    )
    evaluated = evaluate_policy(db, "qs-sft", setup, created_by="test")
    losses = [e["loss"] for e in sft.metrics["log_history"] if "loss" in e]
    _add_aligned_policies(url, sft.policy_id, losses[-1])
    yield url, {"sft": sft, "rm": rm, "eval": evaluated}
    dispose_engines()


def test_reward_model_section_reads_a_real_reward_model_run(realistic, tmp_path):
    """Issue #11 item 5: after a completed `train reward` the report said "No reward-model run yet."."""
    url, made = realistic
    metrics = made["rm"].metrics
    page = write_report(tmp_path / "report", Database.at(url)).read_text()
    section = page.split("<h2>Reward model: held-out pairwise accuracy</h2>")[1].split("<h2>")[0]
    assert "No reward-model run yet." not in section
    (row,) = _rows(section)
    assert f"{100 * metrics['held_out_accuracy']:.1f}" in " ".join(row)
    assert row[:3] == [f"reward_model #{made['rm'].run_id}", "qs-rm", "qs-sft"]
    assert row[3].startswith(f"{100 * metrics['held_out_accuracy']:.1f} [")  # with its Wilson interval
    assert row[4:7] == [
        f"{100 * metrics['train_accuracy']:.1f}",
        str(metrics["num_pairs"]),
        str(metrics["num_held_out"]),
    ]


def test_realistic_report_compares_each_stage_with_its_parent_and_the_control(realistic, tmp_path):
    url, made = realistic
    with session_scope(url) as session:
        data = collect(session)
        stored = session.get(EvalResult, made["eval"].eval_result_id).per_task
        control_run = session.query(Policy).filter_by(name="qs-control").one().training_run_id
    canonical, real = data.comparisons
    assert [r.policy for r in canonical.rows] == ["qs-sft", "qs-dpo", "qs-grpo", "qs-ppo", "qs-control"]
    sft, dpo, *_, control = canonical.rows
    assert dpo.vs_parent.against == "qs-sft" and dpo.vs_control.against == "qs-control"
    gain = dpo.vs_parent.estimate
    assert (
        gain.value == pytest.approx(dpo.pass_at_k[1] - sft.pass_at_k[1]) and gain.low < gain.value < gain.high
    )
    assert dpo.vs_parent.tasks == 200 and sft.pass1.low < sft.pass1.value < sft.pass1.high
    assert control.is_control and control.vs_control is None and control.vs_parent.against == "qs-sft"
    assert sft.vs_parent is None  # its parent, the base model, was not evaluated
    # the real eval: per-task counts stored in the DB, as in its results file
    from_file = {}
    for line in made["eval"].results_path.read_text().splitlines():
        row = json.loads(line)
        n, c = from_file.get(row["task_id"], (0, 0))
        from_file[row["task_id"]] = (n + 1, c + row["passed"])
    assert stored == {t: list(counts) for t, counts in from_file.items()} and len(stored) == 4
    assert (real.setup.num_tasks, real.setup.n, real.setup.ks) == (4, 2, (1, 2))
    assert [r.policy for r in real.rows] == ["qs-sft"] and real.rows[0].pass1.low is not None
    assert ("sft", "loss") in data.curves and ("dpo", "rewards/accuracies") in data.curves
    assert set(data.curves[("sft", "loss")]) == {
        f"qs-sft (sft #{made['sft'].run_id})",
        f"qs-control (sft #{control_run})",
    }

    page = write_report(tmp_path / "report", Database.at(url)).read_text()
    lineage = page.split("<h2>Lineage")[1].split("<h2>")[0]
    rows = {cells[0]: cells for cells in _rows(lineage)}
    assert rows["qs-control"][1:4] == ["control", "qs-sft", f"sft #{control_run}"]
    assert rows["qs-control"][4] == "reference solutions of basic/train; 2,261 examples"
    assert rows["qs-control"][7:] == ["2 min 00 s", "1 min 53 s", "60"]
    assert rows["qs-dpo"][4] == "execution pairs of basic/pool from qs-sft's samples; 1,840 pairs"
    assert rows["(no policy)"][1] == "ppo" and rows["(no policy)"][5] == "failed"
    assert lineage.count('<tr class="control">') == 1
    assert page.count("<h3>Setup ") == 2


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium: apt-get install -y chromium")
def test_report_renders_in_chromium(realistic, tmp_path):
    """The page a reviewer opens: every section and image renders, nothing is fetched, no script runs."""
    from playwright.sync_api import sync_playwright
    from test_browser import CHROMIUM_ARGS

    url, _ = realistic
    index = write_report(tmp_path / "report", Database.at(url))
    shot = tmp_path / "report.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests, dialogs = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(index.as_uri())
        page.wait_for_load_state("load")
        headings = page.locator("h2").all_inner_texts()
        images_ok = page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 300)")
        image_count = page.evaluate("document.images.length")
        controls = page.locator("tr.control").count()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert [h.split(":")[0] for h in headings] == [
        "pass@k per policy",
        "Lineage",
        "Training curves (one panel per stage and metric)",
        "PPO vs GRPO at equal sample budget",
        "Reward model",
        "Human feedback",
        "Reward breakdown",
    ]
    assert images_ok and image_count == 5  # two setups, curves, reward by budget, verdicts
    assert controls == 2  # the control's row in its setup's table and in the lineage
    assert dialogs == [] and all(u.startswith("file://") for u in requests)
    assert shot.stat().st_size > 50_000
    if os.environ.get("CODEALIGN_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["CODEALIGN_SCREENSHOTS"]) / "report.png")
