"""Database failures as the store maps them (orchestrator.store.failures), from
real errors of real databases: an outage is Unavailable, a lost race is
Aborted, a bug stays the driver's own exception (INTERNAL at the API)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from orchestrator.errors import Aborted, AlreadyExists, Unavailable
from orchestrator.store import Database, failures, sqlalchemy_url
from orchestrator.store import users as user_store
from orchestrator.store.schema import users
from tests.support.database import backend

postgres = pytest.mark.postgres


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connecting to it is refused,
    and no other process can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def user_row(user_id: str, username: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": user_id,
        "username": username,
        "password_hash": "hash",
        "role": "member",
        "disabled": False,
        "created_at": now,
        "updated_at": now,
    }


# -- outages ---------------------------------------------------------------------


async def test_a_refused_connection_is_unavailable() -> None:
    with refusing_port() as port:
        database = Database(f"postgresql://postgres@127.0.0.1:{port}/orchestrator")
        try:
            with pytest.raises(Unavailable, match=r"^database unavailable, retry$"):
                async with database.read() as conn:
                    await conn.execute(text("SELECT 1"))
            with pytest.raises(Unavailable, match=r"^database unavailable, retry$"):
                async with database.write() as conn:
                    await conn.execute(text("SELECT 1"))
            assert await database.ping() is False
        finally:
            await database.close()


@pytest.mark.skipif(backend() != "sqlite", reason="an SQLite file")
async def test_a_locked_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    """Another connection holds the file's write lock past this one's (short)
    busy wait. The server's own wait is longer; tests/e2e/test_database_locked.py
    sits through it."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (i INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = create_async_engine(sqlalchemy_url(f"sqlite:{path}"), connect_args={"timeout": 0.1})
    try:
        with pytest.raises(Unavailable) as caught, failures.mapped():
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
        assert isinstance(caught.value.__cause__, DBAPIError)  # the driver's error, for the log
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        await engine.dispose()


async def test_an_exhausted_pool_is_unavailable(database_url: str) -> None:
    engine = create_async_engine(
        sqlalchemy_url(database_url), pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(Unavailable), failures.mapped():
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


@postgres
async def test_a_connection_ended_by_the_server_is_unavailable(database: Database) -> None:
    with pytest.raises(Unavailable):
        async with database.read() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            async with database.read() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await conn.execute(text("SELECT 1"))
    async with database.read() as conn:  # the pool replaced the lost connection
        assert await conn.scalar(text("SELECT 1")) == 1


# -- conflicts -------------------------------------------------------------------


async def test_a_unique_race_is_aborted_and_writes_nothing(database: Database) -> None:
    user_id = str(uuid.uuid4())
    with pytest.raises(Aborted, match="conflict"):
        async with database.write() as conn:
            await conn.execute(users.insert(), [user_row(user_id, "first")])
            await conn.execute(users.insert(), [user_row(user_id, "second")])
    async with database.read() as conn:
        assert await conn.scalar(select(users.c.id).where(users.c.id == user_id)) is None


async def test_a_domain_answer_to_a_driver_error_is_kept(database: Database) -> None:
    """users.create turns the duplicate into ALREADY_EXISTS: that answer stands."""
    async with database.write() as conn:
        await user_store.create(conn, "taken", "hash", "member")
    with pytest.raises(AlreadyExists):
        async with database.write() as conn:
            await user_store.create(conn, "taken", "hash", "member")


async def test_a_bug_keeps_the_driver_error(database: Database) -> None:
    with pytest.raises(DBAPIError) as caught:
        async with database.read() as conn:
            await conn.execute(text("SELECT no_such_column FROM users"))
    assert failures.classify(caught.value) is None


@postgres
async def test_a_deadlock_is_aborted_on_one_side_only(database: Database) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    async with database.write() as conn:
        await conn.execute(users.insert(), [user_row(i, f"user-{i}") for i in ids])
    both_hold_one = asyncio.Barrier(2)

    async def touch(first: str, second: str) -> None:
        async with database.write() as conn:
            for user_id in (first, second):
                await conn.execute(update(users).where(users.c.id == user_id).values(role="admin"))
                if user_id == first:
                    await both_hold_one.wait()

    outcomes = await asyncio.gather(
        touch(ids[0], ids[1]), touch(ids[1], ids[0]), return_exceptions=True
    )
    failed = [o for o in outcomes if o is not None]
    assert len(failed) == 1, outcomes
    assert isinstance(failed[0], Aborted), outcomes
    assert "deadlock detected" in str(failed[0].__cause__)


@postgres
async def test_a_serialization_failure_is_aborted(database: Database) -> None:
    user_id = str(uuid.uuid4())
    async with database.write() as conn:
        await conn.execute(users.insert(), [user_row(user_id, "contended")])
    read_once = asyncio.Event()
    changed = asyncio.Event()

    async def repeatable_read() -> None:
        async with database.write() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            await conn.execute(select(users.c.role).where(users.c.id == user_id))
            read_once.set()
            await changed.wait()
            await conn.execute(update(users).where(users.c.id == user_id).values(role="admin"))

    async def change_meanwhile() -> None:
        await read_once.wait()
        async with database.write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(disabled=True))
        changed.set()

    outcomes = await asyncio.gather(repeatable_read(), change_meanwhile(), return_exceptions=True)
    assert isinstance(outcomes[0], Aborted), outcomes
    assert outcomes[1] is None
