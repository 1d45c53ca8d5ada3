"""codealign's database: SQLAlchemy models, Alembic migrations, the ``Database`` handle, task access.

Imports no torch. Layers above pass a :class:`~db.session.Database` explicitly; nothing here reads the
environment.
"""

from db.session import DEFAULT_DB_URL, Database, db_url

__all__ = ["DEFAULT_DB_URL", "Database", "db_url"]
