"""codealign's database: SQLAlchemy models, Alembic migrations and session helpers. Imports no torch."""

from db.session import DEFAULT_DB_URL, db_url, get_engine, session_scope

__all__ = ["DEFAULT_DB_URL", "db_url", "get_engine", "session_scope"]
