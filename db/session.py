"""The database handle every layer is given: :class:`Database` (a URL, its cached engine, transactions).

State is passed, never read from the environment here: the CLI turns ``--db`` (default
``$CODEALIGN_DB_URL``, else ``sqlite:///codealign.db``, a file in the current directory like MLflow's
``mlruns``) into one ``Database`` and hands it to the command; library functions take it as an argument.
SQLite connections run with WAL, ``foreign_keys=ON`` and a busy timeout so the annotation app, ``codealign
score`` and a training run can share one file. PostgreSQL URLs (``postgresql://user:pw@host/db``) work
unchanged (psycopg 3).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from codealign.errors import UserError

DEFAULT_DB_URL = "sqlite:///codealign.db"
DB_URL_ENV = "CODEALIGN_DB_URL"  # the default of the CLI's --db (read by the CLI only)
SQLITE_BUSY_TIMEOUT_MS = 30_000

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def db_url(url: str | None = None) -> str:
    """``url`` (default: ``sqlite:///codealign.db``) checked and normalised: psycopg 3 as the PostgreSQL
    driver, a relative SQLite path made absolute; a one-line ``UserError`` for a malformed or unknown one."""
    url = url or DEFAULT_DB_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]  # psycopg 3 is the driver we ship
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except ArgumentError:
        raise UserError(f"invalid database URL: {url!r} (e.g. sqlite:///codealign.db)") from None
    except NoSuchModuleError:
        kind = url.split(":", 1)[0]
        raise UserError(
            f"database URL {redact(url)!r}: unknown database type {kind!r} (use sqlite:///FILE or "
            "postgresql://user:password@host/db)"
        ) from None
    database = parsed.database
    # A relative SQLite path made absolute: a process that changes directory keeps the same file (SQLite
    # resolves a relative path on every new connection), and one file has one cached engine.
    relative = database not in (None, "", ":memory:") and not os.path.isabs(database)
    if parsed.drivername.startswith("sqlite") and relative:
        url = parsed.set(database=os.path.abspath(database)).render_as_string(hide_password=False)
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; fsync at checkpoints
    cur.close()


def get_engine(url: str, *, create: bool = False) -> Engine:
    """One cached engine per URL (pools are per engine).

    A SQLite file that does not exist is refused unless ``create`` (``codealign db upgrade`` passes it):
    connecting would leave an empty file behind that every later command then reports as "no schema".
    """
    from sqlalchemy import create_engine

    url = db_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                path = make_url(url).database
                if path and path != ":memory:":
                    parent = os.path.dirname(os.path.abspath(path))
                    if not os.path.isdir(parent):
                        raise UserError(f"database directory does not exist: {parent}")
                    if not create and not os.path.exists(path):
                        raise UserError(
                            f"database {path} does not exist: run `codealign db upgrade` to create it "
                            "(or pass --db URL)"
                        )
                engine = create_engine(
                    url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@dataclass(frozen=True)
class Database:
    """One database: ``url`` is resolved by :func:`db_url`. Cheap to create and to pass around; engines are
    cached per URL, so two handles on one URL share a connection pool."""

    url: str

    @classmethod
    def at(cls, url: str | None = None) -> Database:
        return cls(db_url(url))

    @property
    def engine(self) -> Engine:
        return get_engine(self.url)

    def session(self) -> AbstractContextManager[Session]:
        """A transaction: commits on success, rolls back on any exception (nothing half-written)."""
        return session_scope(self.url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def sqlite_path(self) -> str | None:
        """The file of a SQLite database (None for in-memory or other backends)."""
        path = make_url(self.url).database if self.is_sqlite else None
        return path if path not in (None, "", ":memory:") else None

    def exists(self) -> bool:
        """False only for a SQLite file that is not there (connecting would create an empty one)."""
        path = self.sqlite_path()
        return path is None or os.path.exists(path)

    def __str__(self) -> str:
        return redact(self.url)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on any exception (nothing half-written)."""
    session = sessionmaker(bind=get_engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise as_user_error(exc, db_url(url)) from exc
    except ProgrammingError as exc:  # PostgreSQL reports a missing table here
        session.rollback()
        raise as_user_error(exc, db_url(url)) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def as_user_error(exc: Exception, url: str) -> UserError:
    """A database failure the user can act on, as one line (the schema is missing, the server is down)."""
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if "no such table" in detail or "does not exist" in detail and "relation" in detail:
        return UserError(
            f"database {redact(url)} has no codealign schema ({detail}); run `codealign db upgrade`"
        )
    return UserError(f"database {redact(url)}: {detail}")


def redact(url: str) -> str:
    """The URL with its password hidden, for printing."""
    return make_url(url).render_as_string(hide_password=True)
