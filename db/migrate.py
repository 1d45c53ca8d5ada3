"""Schema migrations behind three small functions (used by ``codealign db`` and by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError

from db.session import as_user_error, db_url, get_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", db_url(url).replace("%", "%%"))
    return cfg


@dataclass
class SchemaState:
    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def upgrade(url: str | None = None, revision: str = "head") -> SchemaState:
    get_engine(url, create=True)  # the one command allowed to create a SQLite file; env.py reuses this engine
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise as_user_error(exc, db_url(url)) from exc
    return current(url)


def downgrade(url: str | None = None, revision: str = "-1") -> SchemaState:
    try:
        command.downgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise as_user_error(exc, db_url(url)) from exc
    return current(url)


def current(url: str | None = None) -> SchemaState:
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    try:
        with get_engine(url).connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise as_user_error(exc, db_url(url)) from exc
    return SchemaState(url=db_url(url), current=rev, head=head)
