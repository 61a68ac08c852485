"""The connection to SQLite or PostgreSQL, and how transactions begin.

`read()` gives a connection for queries; `write()` a transaction that will
write. On SQLite a write transaction starts with BEGIN IMMEDIATE (a deferred
one that later writes fails with SQLITE_BUSY at once in WAL mode, whatever
the busy timeout), and writers in this process queue on a lock instead of
spinning on the busy timeout.

Both map the driver's failures on the way out (`failures.mapped`): an
outage answers UNAVAILABLE, a lost race ABORTED, never a driver class.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncTransaction,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from orchestrator.store import failures, sqlite_inline

Dialect = Literal["sqlite", "postgresql"]

_BUSY_TIMEOUT_MS = 10_000
# SQLite's own wait for a lock, which holds up the event loop: kept short.
_INLINE_BUSY_MS = 20
_BUSY_PAUSE_SECONDS = 0.002
_BUSY_PAUSE_MAX_SECONDS = 0.1
_WAL_TRY_MS = 50
# A replica's PostgreSQL connections carry its id as their application_name,
# so any replica can list the others from pg_stat_activity (see store/status.py).
# PostgreSQL keeps 63 bytes of it, in ASCII: a longer or non-ASCII id shows cut.
APPLICATION_PREFIX = "orchestrator:"


def sqlalchemy_url(database_url: str) -> str:
    """DATABASE_URL (`sqlite:PATH`, `sqlite::memory:`, `postgresql://…`) as
    SQLAlchemy's async URL."""
    if database_url.startswith("sqlite:"):
        path = database_url.removeprefix("sqlite:").removeprefix("//")
        return "sqlite+aiosqlite:///" + path
    for scheme in ("postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+asyncpg://" + database_url.removeprefix(scheme)
    raise ValueError(f"unsupported database URL: {database_url}")


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:").removeprefix("//")


def _is_memory(database_url: str) -> bool:
    return database_url.removeprefix("sqlite:") in (":memory:", "")


class Database:
    def __init__(
        self, database_url: str, *, pool_size: int = 10, replica_id: str | None = None
    ) -> None:
        self.dialect: Dialect = "sqlite" if database_url.startswith("sqlite:") else "postgresql"
        self.is_memory = self.dialect == "sqlite" and _is_memory(database_url)
        options: dict[str, Any] = {}
        if self.is_memory:
            # One connection holds the whole database; every user shares it.
            options["poolclass"] = StaticPool
        elif self.dialect == "postgresql":
            options["pool_size"] = min(pool_size, 20)
            options["max_overflow"] = max(0, pool_size - options["pool_size"])
            options["pool_pre_ping"] = True
            # As long as SQLite's busy wait: past it, a call answers
            # UNAVAILABLE well before a client's own deadline.
            options["pool_timeout"] = _BUSY_TIMEOUT_MS / 1000
            if replica_id is not None:
                name = APPLICATION_PREFIX + replica_id
                options["connect_args"] = {"server_settings": {"application_name": name}}
        if self.dialect == "sqlite":
            path = ":memory:" if self.is_memory else _sqlite_path(database_url)
            options["async_creator"] = lambda: sqlite_inline.connect(path)
        self.engine: AsyncEngine = create_async_engine(sqlalchemy_url(database_url), **options)
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            _install_sqlite_hooks(self.engine, wal=not self.is_memory)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; its implicit transaction ends on exit."""
        with failures.mapped():
            if self.is_memory:
                # A single shared connection: reads must not interleave with a write.
                assert self._write_lock is not None
                async with self._write_lock, self.engine.connect() as conn:
                    yield conn
                return
            async with self.engine.connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on a clean exit and rolls back on error."""
        with failures.mapped():
            if self._write_lock is None:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock, self.engine.connect() as conn:
                await conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                transaction = await _begin_when_free(conn)
                try:
                    yield conn
                except BaseException:
                    await transaction.rollback()
                    raise
                await transaction.commit()

    async def ping(self) -> bool:
        """Whether the database answers: whatever stops it (an outage, a
        dropped database, a bad password) is a no for a health check."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()


async def _begin_when_free(conn: AsyncConnection) -> AsyncTransaction:
    """BEGIN IMMEDIATE, waiting (asleep, not on SQLite's busy timeout: the
    driver runs on the loop's thread) while another process holds the write
    lock, up to the busy wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _BUSY_TIMEOUT_MS / 1000
    pause = _BUSY_PAUSE_SECONDS
    while True:
        try:
            return await conn.begin()
        except OperationalError as error:
            if not failures.is_busy(error) or loop.time() >= deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, _BUSY_PAUSE_MAX_SECONDS)


def _enter_wal(cursor: Any) -> None:
    """Switch a new file to WAL. The switch needs the file to itself; waiting
    for that while holding a read lock deadlocks with another process whose
    first transaction wants to commit (two replicas starting on a new file).
    So: short waits, giving the lock up between tries."""
    cursor.execute(f"PRAGMA busy_timeout={_WAL_TRY_MS}")
    for _ in range(_BUSY_TIMEOUT_MS // _WAL_TRY_MS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            continue
    cursor.execute("PRAGMA journal_mode=WAL")


def _install_sqlite_hooks(engine: AsyncEngine, *, wal: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            _enter_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={_INLINE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))
