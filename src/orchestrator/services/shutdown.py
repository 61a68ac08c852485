"""The server's "shutting down" signal, as open streams see it: each one
ends with UNAVAILABLE instead of holding the shutdown up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from orchestrator.errors import Unavailable

T = TypeVar("T")

SHUTTING_DOWN = "server shutting down"


class Shutdown:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def begin(self) -> None:
        self._event.set()

    @property
    def started(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    async def guard(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Items of `source` until it ends or shutdown begins; then UNAVAILABLE."""
        stop = asyncio.ensure_future(self._event.wait())
        step: asyncio.Future[T] | None = None
        try:
            while True:
                step = asyncio.ensure_future(anext(source))
                await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    raise Unavailable(SHUTTING_DOWN)
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            # Also when the caller went away: nothing may go on reading for it.
            stop.cancel()
            if step is not None:
                # Cancelled if pending; either way its outcome is collected,
                # so nothing is left unretrieved.
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
