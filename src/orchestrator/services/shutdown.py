"""The server's "shutting down" signal: open streams end with UNAVAILABLE
instead of holding the shutdown up (see streams.py)."""

from __future__ import annotations

import asyncio

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
