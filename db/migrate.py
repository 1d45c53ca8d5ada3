"""Schema migrations behind three small functions (used by ``codealign db`` and by tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError

from db.session import Database, as_user_error, get_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


@dataclass
class SchemaState:
    url: str
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def upgrade(db: Database, revision: str = "head") -> SchemaState:
    get_engine(
        db.url, create=True
    )  # the one command allowed to create a SQLite file; env.py reuses this engine
    try:
        command.upgrade(alembic_config(db), revision)
    except OperationalError as exc:
        raise as_user_error(exc, db.url) from exc
    return current(db)


def downgrade(db: Database, revision: str = "-1") -> SchemaState:
    try:
        command.downgrade(alembic_config(db), revision)
    except OperationalError as exc:
        raise as_user_error(exc, db.url) from exc
    return current(db)


def current(db: Database) -> SchemaState:
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    try:
        with db.engine.connect() as conn:
            rev = MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise as_user_error(exc, db.url) from exc
    return SchemaState(url=db.url, current=rev, head=head)
