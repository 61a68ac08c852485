"""Migrations: empty to head, idempotent, and in agreement with the schema."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from orchestrator.store import Database, current_revision, head_revision, upgrade
from orchestrator.store.schema import metadata
from tests.support.server import ServerProcess


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": True},
    )
    return list(compare_metadata(context, metadata))


async def test_empty_to_head_twice(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert await current_revision(database) is None
        assert await upgrade(database) == head_revision()
        async with database.read() as conn:
            tables = await conn.run_sync(_tables)
        assert set(metadata.tables) | {"alembic_version"} == tables

        assert await upgrade(database) == head_revision()  # a no-op the second time
        async with database.read() as conn:
            assert await conn.run_sync(_tables) == tables
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [row[0] for row in versions] == [head_revision()]
    finally:
        await database.close()


async def test_migrations_build_the_declared_schema(database_url: str) -> None:
    database = Database(database_url)
    try:
        await upgrade(database)
        async with database.read() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await database.close()


async def test_replicas_migrating_together_take_turns(database_url: str) -> None:
    replicas = [Database(database_url) for _ in range(3)]
    try:
        revisions = await asyncio.gather(*(upgrade(db) for db in replicas))
        assert revisions == [head_revision()] * 3
    finally:
        for db in replicas:
            await db.close()


def test_migrate_command(database_url: str) -> None:
    for _ in range(2):  # on an empty database, then on one at head
        process = ServerProcess(database_url, args=("migrate",)).launch()
        assert process.wait(60) == 0, process.log
        assert process.stdout.strip() == f"database at revision {head_revision()}"
