"""Group commit: requests that arrive while a write is under way are
written together by the next one.

Each write is a transaction; most of its cost (statement set-up, a commit,
on SQLite the one writer) is the same for one row or a hundred. Nobody waits
for a batch to fill: a request goes out at once if nothing is being written,
otherwise with everything that queued up behind the current write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        max_batch: int = 500,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        # Told each batch's size as it is written (metrics).
        self._on_batch = on_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._writer is None:
            # A task of its own: a caller that goes away (a dropped RPC) must
            # not take the others' writes with it.
            self._writer = asyncio.create_task(self._drain(), name="group-commit")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                self._on_batch(len(batch))
                try:
                    results = await self._write([item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._writer = None
