"""Shared fixtures: temporary databases (SQLite always, PostgreSQL when the test set-up started one).

``make test`` starts a loopback PostgreSQL (``.ci/postgres.sh``) and exports ``CODEALIGN_TEST_PG_URL``; with
``CODEALIGN_REQUIRE_PG=1`` (set in CI) a missing server fails the postgres tests instead of skipping them.
"""

from __future__ import annotations

import os
import uuid

import pytest


def _sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'codealign.db'}"


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch):
    """Code under test gets its database passed; a user's $CODEALIGN_DB_URL must not leak into a test."""
    monkeypatch.delenv("CODEALIGN_DB_URL", raising=False)


@pytest.fixture
def db(tmp_path):
    """A fresh, migrated SQLite ``Database`` (passed explicitly to what the test calls)."""
    from db.migrate import upgrade
    from db.session import Database, dispose_engines

    database = Database.at(_sqlite_url(tmp_path))
    upgrade(database)
    yield database
    dispose_engines()


@pytest.fixture
def db_url(db):
    """The URL of ``db``: for the command line (``--db``) and subprocesses."""
    return db.url


@pytest.fixture
def pg_server_url():
    url = os.environ.get("CODEALIGN_TEST_PG_URL")
    if not url:
        if os.environ.get("CODEALIGN_REQUIRE_PG") == "1":
            pytest.fail("CODEALIGN_REQUIRE_PG=1 but CODEALIGN_TEST_PG_URL is not set (see .ci/postgres.sh)")
        pytest.skip("no PostgreSQL server: run `make test` as root, or set CODEALIGN_TEST_PG_URL")
    return url


@pytest.fixture
def pg_empty_url(pg_server_url):
    """A brand-new empty PostgreSQL database on the test server, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from db.session import db_url as resolve
    from db.session import dispose_engines

    server = make_url(resolve(pg_server_url))
    name = f"codealign_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_empty_db_url(request, tmp_path):
    """An empty (unmigrated) database of each backend: the DB tests run on both."""
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        from db.session import dispose_engines

        dispose_engines()
    else:
        yield request.getfixturevalue("pg_empty_url")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded model at the ``test`` preset (hidden 64, 2 layers), built once per test session.

    Random weights: use it for plumbing (shapes, saving, DB rows), never to assert learning. Treat it as
    read-only; copy it (``shutil.copytree``) before training on it in place.
    """
    from alignment.model_init import init_model

    return init_model(tmp_path_factory.mktemp("tiny_model") / "model", preset="test", seed=0)


@pytest.fixture(scope="session")
def zoo_models(tmp_path_factory):
    """Tiny random-init models of every architecture in ``tests/zoo.py``, each built on first use
    (``zoo_models.path("qwen2")``). Read-only: copy one before training on it in place."""
    from zoo import Zoo

    return Zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def zoo_db(tmp_path_factory):
    """One DB per test module: the zoo's tiny dataset as suites ``zoo`` (completion format) and ``zoochat``
    (the same tasks as conversations), train split, three scored completions per task."""
    from zoo import seed_pairs

    from db.migrate import upgrade
    from db.session import Database, dispose_engines

    database = Database.at(_sqlite_url(tmp_path_factory.mktemp("zoo_db")))
    upgrade(database)
    seed_pairs(database, "zoo")
    seed_pairs(database, "zoochat", chat=True)
    yield database
    dispose_engines()
