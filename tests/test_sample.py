"""``codealign sample``: completions stored with params and lineage; reruns resume instead of duplicating."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from alignment.cli import main
from alignment.generation import SamplingParams
from alignment.sample import sample_to_db
from codealign.errors import UserError
from codealign.tasks.basic import generate_suite
from db.models import Completion, Policy
from db.session import session_scope
from db.tasks import import_tasks

FAST = SamplingParams(temperature=1.0, max_new_tokens=6, seed=0)


@pytest.fixture
def db_with_tasks(db_url):
    specs = [t for t in generate_suite(0) if t.split == "train"][:4]
    with session_scope(db_url) as session:
        import_tasks(session, specs, source="basic", created_by="test")
    return db_url


def _count(db_url, **where) -> int:
    with session_scope(db_url) as session:
        query = select(func.count()).select_from(Completion)
        for column, value in where.items():
            query = query.where(getattr(Completion, column) == value)
        return session.scalar(query)


def test_sample_stores_completions_with_params_and_policy(db, db_with_tasks, tiny_model_dir):
    result = sample_to_db(
        db, str(tiny_model_dir), "basic", "train", k=2, params=FAST, limit=3, progress=False
    )
    assert (result.tasks, result.created, result.reused) == (3, 6, 0)
    assert sorted(len(ids) for ids in result.completion_ids.values()) == [2, 2, 2]
    with session_scope(db_with_tasks) as session:
        policy = session.get(Policy, result.policy_id)
        assert policy.stage == "external" and policy.checkpoint_path == str(tiny_model_dir.resolve())
        rows = session.scalars(select(Completion)).all()
        assert {r.sample_index for r in rows} == {0, 1}
        assert all(r.sampling_params == FAST.as_dict() and r.sampling_key == FAST.key for r in rows)
        assert all(r.policy_id == policy.id and r.created_by.startswith("cli:") for r in rows)


def test_rerun_resumes_and_only_fills_gaps(db, db_with_tasks, tiny_model_dir):
    first = sample_to_db(db, str(tiny_model_dir), "basic", "train", k=2, params=FAST, progress=False)
    assert first.created == 8
    again = sample_to_db(db, str(tiny_model_dir), "basic", "train", k=2, params=FAST, progress=False)
    assert (again.created, again.reused) == (0, 8) and again.completion_ids == first.completion_ids

    with session_scope(db_with_tasks) as session:  # an interrupted run: some samples never got stored
        session.execute(delete(Completion).where(Completion.sample_index == 1))
    resumed = sample_to_db(db, str(tiny_model_dir), "basic", "train", k=3, params=FAST, progress=False)
    assert (resumed.created, resumed.reused) == (8, 4)
    assert _count(db_with_tasks) == 12

    other_seed = SamplingParams(temperature=1.0, max_new_tokens=6, seed=1)
    assert other_seed.key != FAST.key
    sample_to_db(
        db, first.policy_name, "basic", "train", k=1, params=other_seed, progress=False
    )  # by name now
    assert _count(db_with_tasks, sampling_key=other_seed.key) == 4


def test_bad_input_is_one_line_error(db, db_with_tasks, tiny_model_dir, tmp_path):
    with pytest.raises(UserError, match="neither a registered policy name nor a model directory"):
        sample_to_db(db, str(tmp_path / "nope"), progress=False)
    with pytest.raises(UserError, match="no 'basic' tasks in split 'pool'"):
        sample_to_db(db, str(tiny_model_dir), "basic", "pool", progress=False)
    with pytest.raises(UserError, match="--top-p"):
        SamplingParams(top_p=0)


def test_cli(db, db_with_tasks, db_url, tiny_model_dir, capsys):
    argv = [
        "--db",
        db_url,
        "sample",
        "--policy",
        str(tiny_model_dir),
        "--k",
        "1",
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
    ]
    assert main(argv) == 0
    assert "2 new completions (0 already there) for 2 tasks" in capsys.readouterr().out
    assert main([*argv[:-2], "--k", "0"]) == 2


def test_retrained_policy_gets_fresh_samples(db, db_with_tasks, tiny_model_dir):
    """Same name and directory, new training run: the old weights' samples must not be reused."""
    from db.models import TrainingRun

    first = sample_to_db(db, str(tiny_model_dir), "basic", "train", k=1, params=FAST, limit=2, progress=False)
    with session_scope(db_with_tasks) as session:
        run = TrainingRun(stage="sft", status="completed", created_by="test")
        session.add(run)
        session.flush()
        session.get(Policy, first.policy_id).training_run_id = run.id
        run_id = run.id
    again = sample_to_db(db, first.policy_name, "basic", "train", k=1, params=FAST, limit=2, progress=False)
    assert (again.created, again.reused) == (2, 0) and again.sampling_key != first.sampling_key
    with session_scope(db_with_tasks) as session:
        stored = session.get(Completion, again.completion_ids[next(iter(again.completion_ids))][0])
        assert stored.sampling_params == {**FAST.as_dict(), "policy_run_id": run_id}
