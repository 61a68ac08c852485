"""Helpers for tests of streams that must end: read to the end, open a watch."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from grpc import aio

from tests.e2e.conftest import STREAM_TIMEOUT, Client, RawWorker
from tests.support.grpc import Metadata


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def ended_with(call: aio.StreamStreamCall | aio.UnaryStreamCall) -> list[str]:  # type: ignore[type-arg]
    """Reads the stream to its end; the kinds of what came before it."""
    kinds = []
    async with asyncio.timeout(STREAM_TIMEOUT):
        with contextlib.suppress(aio.AioRpcError):  # its code is the caller's to check
            while (message := await call.read()) is not aio.EOF:
                kinds.append(message.WhichOneof("kind") or "event")
    return kinds


async def open_watch(client: Client) -> aio.UnaryStreamCall:  # type: ignore[type-arg]
    """A WatchTask stream past the gate: its first event has arrived."""
    queued = await client.create(f"nobody-{secrets.token_hex(3)}", {}, start=True)
    watch = client.watch_call(queued.id)
    async with asyncio.timeout(STREAM_TIMEOUT):
        assert (await watch.read()).task_id == queued.id
    return watch  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def hand_worker(admin: Client, task_type: str) -> AsyncIterator[RawWorker]:
    """A worker stream serving `task_type` alone, driven by the test."""
    worker = RawWorker(admin, bearer(await admin.worker_token(f"hand-{task_type}")))
    await worker.hello(f"hand-{task_type}", [task_type])
    try:
        yield worker
    finally:
        worker.call.cancel()
