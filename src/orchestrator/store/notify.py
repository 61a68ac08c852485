"""PostgreSQL LISTEN/NOTIFY between replicas.

A transaction that queues work, appends events or revokes a credential
sends one NOTIFY; it is delivered when (and only if) the transaction
commits. Each replica listens on a connection of its own and wakes its
dispatcher, the followers of the named tasks and runs, or its credential
checks. Polling stays as the safety net for a lost connection. On SQLite
there is one replica and nobody to tell: `notify` does nothing.
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

from orchestrator.errors import Unavailable
from orchestrator.store import failures

log = logging.getLogger(__name__)

CHANNEL = "orchestrator"
# NOTIFY payloads are limited to 8000 bytes; past this, say "everything".
_MAX_PAYLOAD = 7000
RECONNECT_SECONDS = 2.0


async def notify(
    conn: AsyncConnection,
    origin: str,
    *,
    queued: bool = False,
    keys: Iterable[str] = (),
    revoked: bool = False,
) -> None:
    if conn.dialect.name != "postgresql":
        return
    message = {"origin": origin, "queued": queued, "keys": sorted(set(keys)), "revoked": revoked}
    payload = json.dumps(message)
    if len(payload) > _MAX_PAYLOAD:
        payload = json.dumps({**message, "keys": ["*"]})
    await conn.execute(
        text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload}
    )


async def listen(
    dsn: str,
    origin: str,
    on_queued: Callable[[], None],
    on_keys: Callable[[list[str]], None],
    on_revoked: Callable[[], None],
) -> None:
    """Listen until cancelled, reconnecting after a lost connection."""

    def received(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = json.loads(payload)
        if message.get("origin") == origin:
            return
        if message.get("queued"):
            on_queued()
        if message.get("revoked"):
            on_revoked()
        on_keys(list(message.get("keys", [])))

    def catch_up() -> None:
        # What was sent while nobody listened: read the logs again.
        on_queued()
        on_revoked()
        on_keys(["*"])

    missed = False
    while True:
        try:
            await _listen_once(dsn, received, catch_up if missed else None)
        except Exception as error:
            # Whatever went wrong, a replica that stops listening goes deaf to
            # the others: keep trying, with a traceback only for a bug.
            if isinstance(failures.classify(error), Unavailable):
                log.warning("LISTEN connection failed, retrying: %s", error)
            else:
                log.exception("LISTEN connection failed, retrying")
            missed = True
            await asyncio.sleep(RECONNECT_SECONDS)
            continue
        log.warning("LISTEN connection lost, reconnecting")
        missed = True


async def _listen_once(
    dsn: str,
    received: Callable[[Any, int, str, str], None],
    listening: Callable[[], None] | None,
) -> None:
    """Listen on one connection until it ends; `listening` is called once the
    listener is in place, so nothing sent from then on can be missed."""
    connection = await asyncpg.connect(dsn)
    closed = asyncio.Event()
    connection.add_termination_listener(lambda _conn: closed.set())
    try:
        await connection.add_listener(CHANNEL, received)
        if listening is not None:
            listening()
        await closed.wait()
    finally:
        await connection.close()
