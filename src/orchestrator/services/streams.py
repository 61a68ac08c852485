"""How open streams end when they must: UNAVAILABLE once the server shuts
down, UNAUTHENTICATED once the caller's credential stops working (logged
out, revoked, user disabled: on any replica)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TypeVar

from orchestrator.auth.identity import Identity
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.errors import OrchestratorError, Unauthenticated, Unavailable
from orchestrator.services.shutdown import SHUTTING_DOWN, Shutdown

T = TypeVar("T")

REVOKED = "credentials revoked: log in again"


class Streams:
    def __init__(self, shutdown: Shutdown, credentials: CredentialWatch) -> None:
        self._shutdown = shutdown
        self._credentials = credentials

    async def guard(self, caller: Identity, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Items of `source` until it ends, shutdown begins or the caller's
        credential stops working."""
        revoked = asyncio.Event()
        release = self._credentials.hold(caller, revoked.set)
        try:
            stops: dict[asyncio.Event, Callable[[], OrchestratorError]] = {
                self._shutdown.event: lambda: Unavailable(SHUTTING_DOWN),
                revoked: lambda: Unauthenticated(REVOKED),
            }
            async for item in until(source, stops):
                yield item
        finally:
            release()


async def until(
    source: AsyncIterator[T], stops: Mapping[asyncio.Event, Callable[[], Exception]]
) -> AsyncIterator[T]:
    """Items of `source` until it ends or one of `stops` is set; then that
    stop's error."""
    waits = {asyncio.ensure_future(stop.wait()): error for stop, error in stops.items()}
    step: asyncio.Future[T] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(source))
            await asyncio.wait({step, *waits}, return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                raise next(error for wait, error in waits.items() if wait.done())()
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        # Also when the caller went away: nothing may go on reading for it.
        for wait in waits:
            wait.cancel()
        if step is not None:
            # Cancelled if pending; either way its outcome is collected, so
            # nothing is left unretrieved.
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
