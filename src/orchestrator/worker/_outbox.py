"""The messages waiting for the stream writer.

Only the event loop's thread touches it (threads hop over with
`call_soon_threadsafe`). Progress is coalesced: a handler reporting in a
tight loop replaces its own unsent report instead of growing the queue, so
`ctx.progress()` stays cheap whatever the network does.
"""

from __future__ import annotations

import asyncio
from collections import deque

from orchestrator.proto import workers_pb2


class Outbox:
    def __init__(self) -> None:
        self._items: deque[workers_pb2.WorkerMessage] = deque()
        self._unsent_progress: dict[str, workers_pb2.WorkerMessage] = {}
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: workers_pb2.WorkerMessage, *, urgent: bool = False) -> None:
        """Queue `message`; `urgent` ones jump the queue (heartbeats must not
        wait behind a flood of log lines while leases run out)."""
        if self._closed:
            return
        if urgent:
            self._items.appendleft(message)
        else:
            self._items.append(message)
        self._ready.set()

    def put_progress(self, message: workers_pb2.WorkerMessage) -> None:
        if self._closed:
            return
        task_id = message.progress.task_id
        unsent = self._unsent_progress.get(task_id)
        if unsent is not None:
            unsent.progress.CopyFrom(message.progress)
            return
        self._unsent_progress[task_id] = message
        self.put(message)

    def close(self) -> None:
        """No more messages; `get()` answers None once the queue is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> workers_pb2.WorkerMessage | None:
        while not self._items:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        message = self._items.popleft()
        if message.WhichOneof("kind") == "progress":
            self._unsent_progress.pop(message.progress.task_id, None)
        return message
