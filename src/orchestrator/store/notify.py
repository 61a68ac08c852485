"""PostgreSQL LISTEN/NOTIFY between replicas.

A transaction that queues work or appends events sends one NOTIFY; it is
delivered when (and only if) the transaction commits. Each replica listens
on a connection of its own and wakes its dispatcher or the followers of the
named tasks and runs. Polling stays as the safety net for a lost connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

CHANNEL = "orchestrator"
# NOTIFY payloads are limited to 8000 bytes; past this, say "everything".
_MAX_PAYLOAD = 7000
RECONNECT_SECONDS = 2.0


async def notify(conn: AsyncConnection, origin: str, queued: bool, keys: Iterable[str]) -> None:
    names = sorted(set(keys))
    payload = json.dumps({"origin": origin, "queued": queued, "keys": names})
    if len(payload) > _MAX_PAYLOAD:
        payload = json.dumps({"origin": origin, "queued": queued, "keys": ["*"]})
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
    )


async def listen(
    dsn: str,
    origin: str,
    on_queued: Callable[[], None],
    on_keys: Callable[[list[str]], None],
) -> None:
    """Listen until cancelled, reconnecting after a lost connection."""

    def received(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = json.loads(payload)
        if message.get("origin") == origin:
            return
        if message.get("queued"):
            on_queued()
        on_keys(list(message.get("keys", [])))

    while True:
        try:
            await _listen_once(dsn, received)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("LISTEN connection failed, retrying: %s", exc)
            await asyncio.sleep(RECONNECT_SECONDS)
            continue
        log.warning("LISTEN connection lost, reconnecting")
        # What was sent while nobody listened: read the logs again.
        on_queued()
        on_keys(["*"])


async def _listen_once(dsn: str, received: Callable[[Any, int, str, str], None]) -> None:
    """Listen on one connection until it ends."""
    connection = await asyncpg.connect(dsn)
    closed = asyncio.Event()
    connection.add_termination_listener(lambda _conn: closed.set())
    try:
        await connection.add_listener(CHANNEL, received)
        await closed.wait()
    finally:
        await connection.close()
