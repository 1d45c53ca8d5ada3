"""Schema, migrations and session behaviour, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from codealign.errors import UserError
from db import migrate
from db.models import Base, Completion, Policy, Task, TrainingRun
from db.session import Database, get_engine, session_scope


def _task(task_id="t/0", source="s"):
    return Task(
        task_id=task_id,
        source=source,
        split="test",
        prompt="def f():\n",
        entry_point="f",
        tests=["assert f() is None"],
        content_hash="x",
        created_by="test",
    )


def test_upgrade_downgrade_roundtrip(any_empty_db_url):
    state = migrate.upgrade(Database.at(any_empty_db_url))
    assert state.up_to_date and state.current == state.head
    tables = set(inspect(get_engine(any_empty_db_url)).get_table_names())
    assert set(Base.metadata.tables) <= tables
    state = migrate.downgrade(Database.at(any_empty_db_url), "base")
    assert state.current is None
    assert set(Base.metadata.tables).isdisjoint(inspect(get_engine(any_empty_db_url)).get_table_names())
    assert migrate.upgrade(Database.at(any_empty_db_url)).up_to_date


def test_migrations_match_models(any_empty_db_url):
    """A model change without a migration (or the reverse) fails here."""
    migrate.upgrade(Database.at(any_empty_db_url))
    with get_engine(any_empty_db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_constraints_enforced(any_empty_db_url):
    migrate.upgrade(Database.at(any_empty_db_url))
    # foreign keys are on (SQLite needs the pragma)
    with pytest.raises(IntegrityError), session_scope(any_empty_db_url) as s:
        s.add(Completion(task_id=999, text="x", created_by="test"))
    with session_scope(any_empty_db_url) as s:
        s.add(_task())
    with pytest.raises(IntegrityError), session_scope(any_empty_db_url) as s:  # (source, task_id) is unique
        s.add(_task())
    with session_scope(any_empty_db_url) as s:
        assert s.scalar(select(Task.id).where(Task.task_id == "t/0")) is not None


def test_cascade_and_lineage(any_empty_db_url):
    migrate.upgrade(Database.at(any_empty_db_url))
    with session_scope(any_empty_db_url) as s:
        run = TrainingRun(stage="sft", config={"lr": 1e-3}, created_by="cli:test")
        base = Policy(name="base", checkpoint_path="/m/base", stage="base", created_by="cli:test")
        s.add_all([run, base])
        s.flush()
        sft = Policy(
            name="sft",
            checkpoint_path="/m/sft",
            stage="sft",
            parent=base,
            training_run_id=run.id,
            created_by=f"run:{run.id}",
        )
        task = _task()
        s.add_all([sft, task])
        s.flush()
        s.add(Completion(task_id=task.id, policy_id=sft.id, text="    return None\n", created_by="run:1"))
    with session_scope(any_empty_db_url) as s:
        sft = s.scalar(select(Policy).where(Policy.name == "sft"))
        assert sft.parent.name == "base" and sft.training_run_id is not None
        s.delete(s.scalar(select(Task)))
    with session_scope(any_empty_db_url) as s:
        assert s.scalars(select(Completion)).all() == []  # completions go with their task


def test_every_produced_row_records_who_and_when():
    exempt = {"ranking_entries"}  # part of a ranking, which carries the provenance
    for name, table in Base.metadata.tables.items():
        if name in exempt:
            continue
        assert {"created_at", "created_by"} <= set(table.columns.keys()), name


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(db_url):
    with get_engine(db_url).connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_session_rolls_back_on_error(db_url):
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        s.add(_task())
        s.flush()
        raise RuntimeError("boom")
    with session_scope(db_url) as s:
        assert s.scalars(select(Task)).all() == []


def test_missing_schema_is_a_user_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(UserError, match="codealign db upgrade"), session_scope(url) as s:
        s.scalars(select(Task)).all()


def test_unreachable_database_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        migrate.current(Database.at(f"sqlite:///{tmp_path / 'missing_dir' / 'x.db'}"))
