"""Which database the tests run on, and a fresh PostgreSQL database per test.

ORCHESTRATOR_TEST_DATABASE selects the backend: "sqlite" (default) or
"postgres". ORCHESTRATOR_TEST_POSTGRES_URL points at the PostgreSQL server's
maintenance database (default: postgres@127.0.0.1:5432, trust auth).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg

BACKENDS = ("sqlite", "postgres")
POSTGRES_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def backend() -> str:
    """The selected backend; ValueError for anything else."""
    value = os.environ.get("ORCHESTRATOR_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"
    if value not in BACKENDS:
        raise ValueError(f"ORCHESTRATOR_TEST_DATABASE={value!r}: expected one of {BACKENDS}")
    return value


def postgres_url(name: str) -> str:
    base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


async def _execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database() -> str:
    """Creates an empty database with a random name and returns the name."""
    name = f"orch_test_{secrets.token_hex(8)}"
    asyncio.run(_execute(f'CREATE DATABASE "{name}"'))
    return name


def drop_postgres_database(name: str) -> None:
    """Drops it, disconnecting whoever is still connected."""
    asyncio.run(_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def temporary_database(directory: Path) -> Iterator[str]:
    """DATABASE_URL of a new, empty database of the selected backend (an
    SQLite file in `directory`), dropped on exit."""
    if backend() == "sqlite":
        yield f"sqlite:{directory}/orchestrator.db"
        return
    name = create_postgres_database()
    try:
        yield postgres_url(name)
    finally:
        drop_postgres_database(name)
