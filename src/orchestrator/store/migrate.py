"""Runs the Alembic migrations shipped in this package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from orchestrator.store.database import Database
from orchestrator.store.locks import MIGRATION_LOCK


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "orchestrator.store:migrations")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", "orchestrator.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together take turns.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    command.upgrade(_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(database: Database) -> str | None:
    """Bring the schema to head; returns the revision it is at."""
    async with database.write() as conn:
        await conn.run_sync(_upgrade)
    return await current_revision(database)


async def current_revision(database: Database) -> str | None:
    async with database.read() as conn:
        return await conn.run_sync(_current)
