"""Integration fixtures: a migrated database of the selected backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.store import Database, upgrade


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open Database at the head revision, closed after the test."""
    db = Database(database_url)
    try:
        await upgrade(db)
        yield db
    finally:
        await db.close()
