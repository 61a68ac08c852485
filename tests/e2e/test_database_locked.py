"""An SQLite file that another process keeps locked past the server's busy
wait (10 s): the call that needed to write answers UNAVAILABLE, which
clients retry, writes nothing, and the server serves again once the lock is
gone."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import Client, refused
from tests.support.database import backend
from tests.support.server import ServerProcess

pytestmark = pytest.mark.skipif(backend() != "sqlite", reason="an SQLite file")

# What the other process runs: take the write lock, say so, hold it until
# its stdin closes.
HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""
# The server's busy wait, plus as much again queued behind one of its own
# background writes that is waiting out the same lock.
BUSY_WAIT_SECONDS = 10.0
DEADLINE_SECONDS = 2 * BUSY_WAIT_SECONDS + 10


async def test_a_write_past_the_busy_wait_is_unavailable(
    database_url: str, orchestrator: ServerProcess, admin: Client
) -> None:
    before = await admin.create("echo", {"n": 1})
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_LOCK,
        database_url.removeprefix("sqlite:"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        async with asyncio.timeout(10):
            assert await holder.stdout.readline() == b"locked\n"
        started = time.monotonic()
        waiting = asyncio.create_task(
            refused(
                admin.tasks.CreateTask(
                    tasks_pb2.CreateTaskRequest(type="echo", title="while locked"),
                    metadata=admin.metadata,
                    timeout=DEADLINE_SECONDS,
                )
            )
        )
        # The write waits asleep: the server goes on answering meanwhile.
        read = await admin.get(before.id)
        assert read.id == before.id and not waiting.done()
        assert time.monotonic() - started < BUSY_WAIT_SECONDS / 2
        error = await waiting
        waited = time.monotonic() - started
    finally:
        holder.stdin.close()
        async with asyncio.timeout(10):
            assert await holder.wait() == 0
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
    assert error.details() == "database unavailable, retry"
    assert waited >= BUSY_WAIT_SECONDS - 0.5, "answered before the busy wait was over"
    assert await admin.list_ids() == [before.id]  # nothing half-written
    after = await admin.create("echo", {"n": 2})  # the lock is gone: writes go through
    assert set(await admin.list_ids()) == {before.id, after.id}
    assert "unexpected error" not in orchestrator.log
