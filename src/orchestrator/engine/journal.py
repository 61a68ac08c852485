"""A write transaction over tasks that records their events as it goes.

Events are appended in the same transaction as the change they describe and
published to live followers only after the commit, so a follower never sees
an event that could still roll back.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.events import EventHub
from orchestrator.model import JsonObject, Task, TaskEvent, TaskEventType
from orchestrator.store import Database
from orchestrator.store import events as event_store
from orchestrator.store.types import utcnow


class Changes:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.now = utcnow()
        self.events: list[TaskEvent] = []

    def record(
        self,
        task: Task,
        type: TaskEventType,
        message: str = "",
        output: JsonObject | None = None,
    ) -> TaskEvent:
        """The event for a change just made to `task` (which carries the
        bumped sequence number)."""
        event = TaskEvent(
            task_id=task.id,
            sequence=task.last_sequence,
            type=type,
            status=task.status,
            created_at=self.now,
            attempt=task.attempt,
            progress=task.progress,
            message=message,
            output=output,
            worker_id=task.worker_id,
        )
        self.events.append(event)
        return event


class Journal:
    def __init__(self, database: Database, hub: EventHub[TaskEvent]) -> None:
        self.database = database
        self.hub = hub

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[Changes]:
        async with self.database.write() as conn:
            changes = Changes(conn)
            yield changes
            await event_store.append(conn, changes.events)
        by_task: defaultdict[str, list[TaskEvent]] = defaultdict(list)
        for event in changes.events:
            by_task[event.task_id].append(event)
        for task_id, events in by_task.items():
            self.hub.publish(task_id, events)
