"""orchestrator.store on the selected backend: users, sessions, transactions."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.exc import IntegrityError, StatementError

from orchestrator.errors import AlreadyExists
from orchestrator.store import Database
from orchestrator.store import sessions as session_store
from orchestrator.store import users as user_store
from orchestrator.store.schema import sessions, users
from orchestrator.store.users import User
from tests.support.database import backend, postgres_url
from tests.support.grpc import wait_until

sqlite_only = pytest.mark.skipif(backend() != "sqlite", reason="SQLite connection settings")


def aiosqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def count(database: Database, table: Table) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def make_user(database: Database, username: str = "alice") -> User:
    async with database.write() as conn:
        return await user_store.create(conn, username, "hash-1", "member")


# -- users ---------------------------------------------------------------------


async def test_user_round_trip(database: Database) -> None:
    before = datetime.now(UTC)
    created = await make_user(database)
    async with database.read() as conn:
        by_name = await user_store.by_username(conn, "alice")
        by_id = await user_store.by_id(conn, created.id)
    assert by_name == by_id
    assert by_name is not None
    assert (by_name.id, by_name.username, by_name.password_hash) == (created.id, "alice", "hash-1")
    assert (by_name.role, by_name.disabled, by_name.is_admin) == ("member", False, False)
    assert by_name.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= by_name.created_at <= datetime.now(UTC)
    assert abs(by_name.created_at - created.created_at) < timedelta(milliseconds=1)


async def test_unknown_user_is_none(database: Database) -> None:
    async with database.read() as conn:
        assert await user_store.by_username(conn, "nobody") is None
        assert await user_store.by_id(conn, "00000000-0000-0000-0000-000000000000") is None


async def test_set_password_and_role(database: Database) -> None:
    user = await make_user(database)
    async with database.write() as conn:
        await user_store.set_password(conn, user.id, "hash-2")
        await user_store.set_role(conn, user.id, "admin")
    async with database.read() as conn:
        changed = await user_store.by_id(conn, user.id)
    assert changed is not None
    assert (changed.password_hash, changed.role, changed.is_admin) == ("hash-2", "admin", True)


async def test_duplicate_username_writes_nothing(database: Database) -> None:
    first = await make_user(database)
    with pytest.raises(AlreadyExists, match="alice"):
        await make_user(database)
    async with database.read() as conn:
        assert (await user_store.by_username(conn, "alice")) == first
    assert await count(database, users) == 1


async def test_duplicate_username_leaves_the_transaction_usable(database: Database) -> None:
    await make_user(database)
    async with database.write() as conn:
        await user_store.create(conn, "bob", "hash-b", "member")
        with pytest.raises(AlreadyExists):
            await user_store.create(conn, "alice", "hash-x", "admin")
        await user_store.create(conn, "carol", "hash-c", "member")
    async with database.read() as conn:
        names = (await conn.execute(select(users.c.username).order_by(users.c.username))).all()
        alice = await user_store.by_username(conn, "alice")
    assert [row[0] for row in names] == ["alice", "bob", "carol"]
    assert alice is not None and alice.password_hash == "hash-1"


async def test_concurrent_writers_all_commit(database: Database) -> None:
    await asyncio.gather(*(make_user(database, f"user{i}") for i in range(12)))
    assert await count(database, users) == 12


# -- sessions ------------------------------------------------------------------


async def test_session_round_trip(database: Database) -> None:
    user = await make_user(database)
    expires = datetime.now(UTC) + timedelta(hours=1)
    async with database.write() as conn:
        created = await session_store.create(
            conn, user_id=user.id, family_id=None, refresh_token_hash="h1", expires_at=expires
        )
    async with database.read() as conn:
        found = await session_store.by_refresh_hash(conn, "h1")
        missing = await session_store.by_refresh_hash(conn, "h2")
    assert found == created
    assert created.family_id and created.family_id != created.id
    assert abs(found.expires_at - expires) < timedelta(milliseconds=1)
    assert (found.rotated_at, found.revoked_at) == (None, None)
    assert missing is None


async def test_mark_rotated_once(database: Database) -> None:
    user = await make_user(database)
    async with database.write() as conn:
        session = await session_store.create(
            conn,
            user_id=user.id,
            family_id=None,
            refresh_token_hash="h1",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
        assert await session_store.mark_rotated(conn, session.id) is True
        assert await session_store.mark_rotated(conn, session.id) is False
    async with database.read() as conn:
        rotated = await session_store.by_refresh_hash(conn, "h1")
    assert rotated is not None and rotated.rotated_at is not None


async def test_revoke_family(database: Database) -> None:
    user = await make_user(database)
    later = datetime.now(UTC) + timedelta(hours=1)
    async with database.write() as conn:
        first = await session_store.create(
            conn, user_id=user.id, family_id=None, refresh_token_hash="a1", expires_at=later
        )
        await session_store.create(
            conn,
            user_id=user.id,
            family_id=first.family_id,
            refresh_token_hash="a2",
            expires_at=later,
        )
        other = await session_store.create(
            conn, user_id=user.id, family_id=None, refresh_token_hash="b1", expires_at=later
        )
    async with database.write() as conn:
        assert await session_store.family_active(conn, first.family_id)
        await session_store.revoke_family(conn, first.family_id)
    async with database.read() as conn:
        assert not await session_store.family_active(conn, first.family_id)
        assert await session_store.family_active(conn, other.family_id)
        for token_hash in ("a1", "a2"):
            revoked = await session_store.by_refresh_hash(conn, token_hash)
            assert revoked is not None and revoked.revoked_at is not None
        untouched = await session_store.by_refresh_hash(conn, "b1")
        assert untouched is not None and untouched.revoked_at is None


async def test_expired_family_is_not_active(database: Database) -> None:
    user = await make_user(database)
    async with database.write() as conn:
        session = await session_store.create(
            conn,
            user_id=user.id,
            family_id=None,
            refresh_token_hash="old",
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
        )
    async with database.read() as conn:
        assert not await session_store.family_active(conn, session.family_id)


async def test_session_needs_an_existing_user(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.write() as conn:
            await session_store.create(
                conn,
                user_id="00000000-0000-0000-0000-000000000000",
                family_id=None,
                refresh_token_hash="h",
                expires_at=datetime.now(UTC),
            )
    assert await count(database, sessions) == 0


async def test_deleting_a_user_deletes_its_sessions(database: Database) -> None:
    user = await make_user(database)
    async with database.write() as conn:
        await session_store.create(
            conn,
            user_id=user.id,
            family_id=None,
            refresh_token_hash="h",
            expires_at=datetime.now(UTC),
        )
        await conn.execute(delete(users).where(users.c.id == user.id))
    assert await count(database, sessions) == 0


# -- the Database itself -------------------------------------------------------


async def test_write_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with database.write() as conn:
            await user_store.create(conn, "ghost", "hash", "member")
            raise RuntimeError("boom")
    async with database.read() as conn:
        assert await user_store.by_username(conn, "ghost") is None
    await make_user(database, "after")  # the database is still usable
    assert await count(database, users) == 1


async def test_ping(database: Database) -> None:
    assert await database.ping() is True


async def test_ping_of_an_unreachable_database(tmp_path: Path) -> None:
    if backend() == "sqlite":
        url = f"sqlite:{tmp_path}/no-such-directory/orchestrator.db"
    else:
        url = postgres_url("orch_test_does_not_exist")
    before = aiosqlite_threads()
    unreachable = Database(url)
    try:
        assert await unreachable.ping() is False
    finally:
        await unreachable.close()
    # aiosqlite stops the thread of a failed connection without waiting for
    # it; let it finish while this test's event loop can still hear from it.
    await wait_until(lambda: not aiosqlite_threads() - before)


async def test_naive_datetimes_are_refused(database: Database) -> None:
    user = await make_user(database)
    with pytest.raises(StatementError, match="naive datetime"):
        async with database.write() as conn:
            await session_store.create(
                conn,
                user_id=user.id,
                family_id=None,
                refresh_token_hash="h",
                expires_at=datetime.now(),  # naive: the point of the test
            )


@sqlite_only
async def test_sqlite_connection_settings(database: Database) -> None:
    async with database.read() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        # Short: SQLite runs on the event loop's thread. Waiting for another
        # process's lock is done asleep, by write() (test_database_locked).
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 20


@sqlite_only
async def test_sqlite_memory_database() -> None:
    memory = Database("sqlite::memory:")
    try:
        assert memory.is_memory
        async with memory.write() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with memory.read() as conn:  # the same shared connection sees it
            assert (await conn.execute(text("SELECT x FROM t"))).scalar() == 1
    finally:
        await memory.close()
