"""Advisory locks: on PostgreSQL, one replica at a time runs each
background job. SQLite has a single writer, so the lock always succeeds."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATION_LOCK = 0x6F726368
REAPER_LOCK = 0x6F726331
RETENTION_LOCK = 0x6F726332


async def try_lock(conn: AsyncConnection, key: int) -> bool:
    """Take the lock for the rest of this transaction, if it is free."""
    if conn.dialect.name != "postgresql":
        return True
    taken = await conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
    return bool(taken)
