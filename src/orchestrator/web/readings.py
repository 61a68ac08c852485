"""Reads shared by the live streams of one page.

Twenty tabs open on the overview need not read the database twenty times a
second: streams of the same page for callers who see the same things (all
admins; one member) take a read that another stream started less than the
page's `every` ago. Such a read may predate a change a stream was woken
for; it says so (the change feed's version when the read began), and that
stream then renders again after `every` instead of waiting for the next
change, so no change is missed for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.auth.identity import Identity

Values = dict[str, Any]


def scope(caller: Identity) -> str:
    """Callers who see the same things: admins see everything."""
    return "admin" if caller.is_admin else f"user:{caller.user_id}"


class SharedReads:
    def __init__(self, freshness: float) -> None:
        self._freshness = freshness
        self._reads: dict[tuple[str, str], tuple[float, int, asyncio.Future[Values]]] = {}

    async def read(
        self, key: tuple[str, str], version: int, fresh: Callable[[], Awaitable[Values]]
    ) -> tuple[Values, int]:
        """The values and the change-feed version they were read at."""
        now = time.monotonic()
        found = self._reads.get(key)
        if found is None or now - found[0] >= self._freshness or found[2].cancelled():
            found = (now, version, asyncio.ensure_future(fresh()))
            self._reads[key] = found
            entry = found
            # Kept no longer than it may be shared: a read can hold a task's
            # whole input and output, and addresses are the caller's to vary.
            found[2].add_done_callback(
                lambda _: asyncio.get_running_loop().call_later(
                    self._freshness, self._drop, key, entry
                )
            )
        # One stream leaving does not cancel the read others wait on.
        return await asyncio.shield(found[2]), found[1]

    def _drop(self, key: tuple[str, str], entry: tuple[float, int, asyncio.Future[Values]]) -> None:
        if self._reads.get(key) is entry:
            del self._reads[key]
