"""SQLite driven from the event loop's own thread.

aiosqlite runs each call (an execute, a fetch, a commit) on a thread of its
own and hands the answer back: two thread switches, and a fight for the GIL,
per call, dozens per task. SQLite's own work for our statements is a few
microseconds in WAL mode (a commit does not wait for the disk at
synchronous=NORMAL), far less than the hand-over. So calls run inline: this
is aiosqlite's connection with its queue replaced by one that runs each call
at once, which SQLAlchemy's aiosqlite dialect drives as usual.

The price is that SQLite must never wait on the loop's thread: the busy
timeout is short, and waiting for another process's write lock is done by
`Database.write` with asyncio sleeps.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from typing import Any

import aiosqlite

# aiosqlite's default, rows fetched per chunk when iterating a cursor.
_ITER_CHUNK = 64


class _RunAtOnce:
    """Stands in for aiosqlite's queue to its thread: runs the call now."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as error:  # handed to the awaiting caller, as aiosqlite does
            if future is not None and not future.done():
                future.set_exception(error)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, path: str) -> None:
        super().__init__(lambda: sqlite3.connect(path, check_same_thread=False), _ITER_CHUNK)
        self._tx = _RunAtOnce()  # type: ignore[assignment]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        # No thread to start.
        return self._connect().__await__()


async def connect(path: str) -> aiosqlite.Connection:
    return await InlineConnection(path)
