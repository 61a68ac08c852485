"""Storage: one door to SQLite or PostgreSQL.

`Database` owns the connection and transactions; the modules beside it hold
the SQL, one concept each, as functions over a connection so that the engine
can put several of them in one transaction.
"""

from orchestrator.store.database import Database, sqlalchemy_url
from orchestrator.store.migrate import current_revision, head_revision, upgrade

__all__ = ["Database", "current_revision", "head_revision", "sqlalchemy_url", "upgrade"]
