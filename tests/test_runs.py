"""The run registry: rows, lineage, failures, resume detection and rank-0-only writes (no training here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from alignment.recipe import RecipeConfig
from alignment.runs import last_checkpoint, registered_run, start_run
from alignment.tracking import MlflowSettings
from codealign.errors import UserError
from db.models import Policy, TrainingRun
from db.session import session_scope


def _model_dir(path: Path) -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return str(path)


def _fake_checkpoint(output_dir: Path, step: int) -> Path:
    ckpt = output_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return ckpt


def _rows(db_url):
    with session_scope(db_url) as s:
        runs = s.scalars(select(TrainingRun).order_by(TrainingRun.id)).all()
        policies = s.scalars(select(Policy).order_by(Policy.id)).all()
        return runs, policies


def test_completed_run_registers_policy_with_parent_lineage(db, db_url, tmp_path):
    base = _model_dir(tmp_path / "base")
    cfg = RecipeConfig(model_name_or_path=base, output_dir=str(tmp_path / "sft"), learning_rate=0.5)
    with registered_run("sft", cfg, db) as run:
        sft = run.complete({"train_loss": 1.5})
    dpo_cfg = RecipeConfig(
        model_name_or_path=sft.output_dir, output_dir=str(tmp_path / "dpo"), policy_name="my-dpo"
    )
    with registered_run("dpo", dpo_cfg, db) as run:
        dpo = run.complete({"train_loss": 0.7})

    runs, policies = _rows(db_url)
    by_name = {p.name: p for p in policies}
    by_name["base"] = next(p for p in policies if p.stage == "external")  # named by its path
    assert by_name["base"].name == str(Path(base).resolve())  # outside the working directory: absolute
    assert [r.status for r in runs] == ["completed", "completed"]
    assert runs[0].config["learning_rate"] == 0.5 and runs[0].metrics == {"train_loss": 1.5}
    assert runs[0].finished_at is not None and runs[0].created_by == f"run:{runs[0].id}"
    assert by_name["base"].stage == "external" and by_name["base"].checkpoint_path == str(
        Path(base).resolve()
    )
    assert by_name["sft"].parent_id == by_name["base"].id and by_name["sft"].id == sft.policy_id
    assert by_name["my-dpo"].parent_id == by_name["sft"].id and by_name["my-dpo"].stage == "dpo"
    assert by_name["my-dpo"].training_run_id == dpo.run_id == runs[1].id
    assert runs[1].base_policy_id == by_name["sft"].id


def test_failure_is_recorded_and_reraised(db, db_url, tmp_path):
    cfg = RecipeConfig(model_name_or_path=_model_dir(tmp_path / "m"), output_dir=str(tmp_path / "out"))
    with pytest.raises(RuntimeError, match="out of memory"), registered_run("grpo", cfg, db):
        raise RuntimeError("out of memory")
    runs, policies = _rows(db_url)
    assert runs[0].status == "failed" and runs[0].error == "RuntimeError: out of memory"
    assert [p.stage for p in policies] == ["external"]  # the start checkpoint only: none for a failed run


def test_an_mlflow_store_that_cannot_be_opened_is_one_line_and_leaves_no_row(db, db_url, tmp_path):
    cfg = RecipeConfig(
        model_name_or_path=_model_dir(tmp_path / "m"),
        output_dir=str(tmp_path / "out"),
        report_to=["mlflow"],
        mlflow=MlflowSettings(tracking_uri="nosuchscheme://host/x"),
    )
    with (
        pytest.raises(UserError, match=r"^mlflow.tracking_uri: cannot log to nosuchscheme://host/x: "),
        registered_run("sft", cfg, db),
    ):
        pass
    runs, _ = _rows(db_url)
    assert runs == []


def test_returning_without_complete_marks_failed(db, db_url, tmp_path):
    cfg = RecipeConfig(model_name_or_path=_model_dir(tmp_path / "m"), output_dir=str(tmp_path / "out"))
    with registered_run("sft", cfg, db):
        pass
    runs, _ = _rows(db_url)
    assert runs[0].status == "failed" and "run.complete" in runs[0].error


def test_policy_name_of_another_checkpoint_is_refused_before_training(db, db_url, tmp_path):
    base = _model_dir(tmp_path / "m")
    with registered_run(
        "sft", RecipeConfig(model_name_or_path=base, output_dir=str(tmp_path / "a"), policy_name="p"), db
    ) as run:
        run.complete({})
    with pytest.raises(UserError, match="policy_name 'p' is already used"):
        start_run(
            "sft", RecipeConfig(model_name_or_path=base, output_dir=str(tmp_path / "b"), policy_name="p"), db
        )
    runs, _ = _rows(db_url)
    assert len(runs) == 1


def test_resume_reuses_unfinished_run_and_points_at_last_checkpoint(db, db_url, tmp_path):
    out = tmp_path / "dpo"
    cfg = RecipeConfig(model_name_or_path=_model_dir(tmp_path / "m"), output_dir=str(out))
    first = start_run("dpo", cfg, db)  # then the process "dies": status stays running
    assert first.resume_from is None
    _fake_checkpoint(out, 2)
    last = _fake_checkpoint(out, 10)
    (out / "checkpoint-12").mkdir()  # no trainer_state.json: a save that was cut off
    with registered_run("dpo", cfg, db) as run:
        assert run.resume_from == str(last) and run.run_id == first.run_id
        outcome = run.complete({"train_loss": 0.1})
    runs, _ = _rows(db_url)
    assert len(runs) == 1 and runs[0].status == "completed"
    assert runs[0].metrics["resumed_from"] == str(last) and outcome.resumed_from == str(last)
    no_resume = start_run(
        "dpo", RecipeConfig(model_name_or_path=cfg.model_name_or_path, output_dir=str(out), resume=False), db
    )
    assert no_resume.resume_from is None and no_resume.run_id != first.run_id


def test_a_completed_run_is_never_reopened(db, db_url, tmp_path):
    out = tmp_path / "sft"
    cfg = RecipeConfig(model_name_or_path=_model_dir(tmp_path / "m"), output_dir=str(out))
    with registered_run("sft", cfg, db) as run:
        run.complete({})
    _fake_checkpoint(out, 4)
    again = start_run("sft", cfg, db)
    assert again.resume_from is not None and again.run_id != run.run_id


def test_only_rank_zero_writes(db, db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    cfg = RecipeConfig(model_name_or_path=_model_dir(tmp_path / "m"), output_dir=str(tmp_path / "out"))
    with registered_run("dpo", cfg, db) as run:
        outcome = run.complete({"train_loss": 1.0})
    assert outcome.run_id is None and outcome.policy_id is None and outcome.metrics == {"train_loss": 1.0}
    assert _rows(db_url) == ([], [])


def test_last_checkpoint_ignores_other_directories(tmp_path):
    assert last_checkpoint(tmp_path / "missing") is None
    _fake_checkpoint(tmp_path, 9)
    _fake_checkpoint(tmp_path, 11)
    (tmp_path / "checkpoint-final").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-11")  # numeric, not lexical, order
