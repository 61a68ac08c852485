"""The durable event log of tasks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import TaskEvent, TaskEventType, TaskStatus
from orchestrator.store.schema import task_events


def _event(row: Any) -> TaskEvent:
    return TaskEvent(
        task_id=row.task_id,
        sequence=row.sequence,
        type=TaskEventType(row.type),
        status=TaskStatus(row.status),
        created_at=row.created_at,
        attempt=row.attempt,
        progress=row.progress,
        message=row.message,
        output=row.output,
        worker_id=row.worker_id,
    )


async def append(conn: AsyncConnection, events: Sequence[TaskEvent]) -> None:
    if not events:
        return
    await conn.execute(
        task_events.insert(),
        [
            {
                "task_id": e.task_id,
                "sequence": e.sequence,
                "type": e.type.value,
                "status": e.status.value,
                "created_at": e.created_at,
                "attempt": e.attempt,
                "progress": e.progress,
                "message": e.message,
                "output": e.output,
                "worker_id": e.worker_id,
            }
            for e in events
        ],
    )


async def after(
    conn: AsyncConnection, task_id: str, after_sequence: int, limit: int
) -> list[TaskEvent]:
    query = (
        select(task_events)
        .where(task_events.c.task_id == task_id, task_events.c.sequence > after_sequence)
        .order_by(task_events.c.sequence)
        .limit(limit)
    )
    return [_event(row) for row in await conn.execute(query)]


async def latest(
    conn: AsyncConnection,
    task_id: str,
    limit: int,
    types: Collection[TaskEventType] | None = None,
) -> list[TaskEvent]:
    """The task's last `limit` events (of `types` only, when given), oldest
    first: the key read backwards from its end, however long the log. A type
    filter skips the other types on the way, within this one task's events."""
    query = (
        select(task_events)
        .where(task_events.c.task_id == task_id)
        .order_by(task_events.c.sequence.desc())
        .limit(limit)
    )
    if types is not None:
        query = query.where(task_events.c.type.in_([t.value for t in types]))
    return [_event(row) for row in reversed((await conn.execute(query)).all())]


async def last_of_type(conn: AsyncConnection, task_id: str, type: TaskEventType) -> int | None:
    """The sequence number of the task's latest event of this type."""
    found: int | None = await conn.scalar(
        select(func.max(task_events.c.sequence)).where(
            task_events.c.task_id == task_id, task_events.c.type == type.value
        )
    )
    return found
