"""A request to stop, with a grace deadline that a later request may only
bring closer (a second `stop(grace=0)` cuts the wait short)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Coroutine
from typing import Any


class StopRequest:
    def __init__(self) -> None:
        self._requested = asyncio.Event()
        self._changed = asyncio.Event()
        self._deadline = math.inf

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    def request(self, grace: float) -> None:
        """Loop thread only."""
        deadline = asyncio.get_running_loop().time() + max(grace, 0.0)
        if self._requested.is_set() and deadline >= self._deadline:
            return
        self._deadline = deadline
        self._requested.set()
        # Wakes whoever waits on the old event, then arms a fresh one.
        self._changed.set()
        self._changed = asyncio.Event()

    def remaining(self) -> float:
        """Seconds of grace left (inf before any request)."""
        return self._deadline - asyncio.get_running_loop().time()

    async def wait(self) -> None:
        await self._requested.wait()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early if a stop is requested."""
        try:
            await asyncio.wait_for(self._requested.wait(), seconds)
        except TimeoutError:
            pass


async def first_of(*waits: Coroutine[Any, Any, Any], within: float | None = None) -> None:
    """Wait until one of `waits` finishes or `within` seconds pass; cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
