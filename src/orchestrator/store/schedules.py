"""Schedules: their rows, and the SQL the fire loop uses to take due ones.

A fire is taken under the schedule's row lock: `lock_due` on PostgreSQL is
`SELECT … FOR UPDATE SKIP LOCKED`, so replicas share the due schedules
without waiting on each other, and each re-reads the row it locked (a time
another replica fired meanwhile is no longer due). SQLite renders no FOR
UPDATE: its single writer already serialises the transactions that fire.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, union, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import (
    Concurrency,
    ConcurrencyStrategy,
    JsonObject,
    NewTask,
    Overlap,
    RateLimit,
    RunStatus,
    Schedule,
    ScheduleSpec,
    TaskStatus,
)
from orchestrator.store.schema import schedules, tasks, workflow_runs
from orchestrator.store.types import newer_first_after

_UNFINISHED = (TaskStatus.PENDING.value, TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)


def template_json(task: NewTask) -> JsonObject:
    """A task template as stored: what every fire's task is created with."""
    concurrency, rate = task.concurrency, task.rate_limit
    return {
        "title": task.title,
        "type": task.type,
        "input": task.input,
        "description": task.description,
        "labels": task.labels,
        "priority": task.priority,
        "max_attempts": task.max_attempts,
        "timeout_seconds": task.timeout_seconds,
        "concurrency": [concurrency.key, concurrency.limit, concurrency.strategy.value]
        if concurrency
        else None,
        "rate_limit": [rate.bucket, rate.limit, rate.period_seconds] if rate else None,
    }


def template_from_json(data: JsonObject) -> NewTask:
    concurrency, rate = data["concurrency"], data["rate_limit"]
    return NewTask(
        title=data["title"],
        type=data["type"],
        input=data["input"],
        start=True,
        description=data["description"],
        labels=data["labels"],
        priority=data["priority"],
        max_attempts=data["max_attempts"],
        timeout_seconds=data["timeout_seconds"],
        concurrency=Concurrency(concurrency[0], concurrency[1], ConcurrencyStrategy(concurrency[2]))
        if concurrency
        else None,
        rate_limit=RateLimit(*rate) if rate else None,
    )


def _spec_values(spec: ScheduleSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "cron": spec.cron,
        "interval_seconds": spec.interval_seconds,
        "time_zone": spec.time_zone,
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "jitter_seconds": spec.jitter_seconds,
        "overlap": spec.overlap.value,
        "catchup_window_seconds": spec.catchup_window_seconds,
        "task": template_json(spec.task) if spec.task else None,
        "workflow_id": spec.workflow_id,
        "input": spec.input if spec.workflow_id else None,
    }


def _schedule(row: Any) -> Schedule:
    return Schedule(
        id=row.id,
        owner_id=row.owner_id,
        spec=ScheduleSpec(
            name=row.name,
            cron=row.cron,
            interval_seconds=row.interval_seconds,
            time_zone=row.time_zone,
            task=template_from_json(row.task) if row.task is not None else None,
            workflow_id=row.workflow_id,
            input=row.input or {},
            overlap=Overlap(row.overlap),
            jitter_seconds=row.jitter_seconds,
            start_at=row.start_at,
            end_at=row.end_at,
            catchup_window_seconds=row.catchup_window_seconds,
        ),
        paused=row.paused,
        note=row.note,
        created_at=row.created_at,
        updated_at=row.updated_at,
        next_fire_at=row.next_fire_at,
        buffered_at=row.buffered_at,
        last_fired_at=row.last_fired_at,
        last_task_id=row.last_task_id,
        last_run_id=row.last_run_id,
    )


async def insert(conn: AsyncConnection, schedule: Schedule) -> bool:
    """False if the owner already has a schedule by this name."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                schedules.insert().values(
                    id=schedule.id,
                    owner_id=schedule.owner_id,
                    paused=schedule.paused,
                    note=schedule.note,
                    next_fire_at=schedule.next_fire_at,
                    buffered_at=None,
                    last_fired_at=None,
                    last_task_id=None,
                    last_run_id=None,
                    created_at=schedule.created_at,
                    updated_at=schedule.updated_at,
                    **_spec_values(schedule.spec),
                )
            )
    except IntegrityError:
        return False
    return True


async def get(conn: AsyncConnection, schedule_id: str, *, lock: bool = False) -> Schedule | None:
    """The schedule; `lock`: held until the transaction ends (waiting for a
    fire in progress to commit)."""
    query = select(schedules).where(schedules.c.id == schedule_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return _schedule(row) if row else None


async def page(
    conn: AsyncConnection, *, owner_id: str | None, after: tuple[datetime, str] | None, limit: int
) -> list[Schedule]:
    """Newest first, after the keyset cursor."""
    query = select(schedules)
    if owner_id is not None:
        query = query.where(schedules.c.owner_id == owner_id)
    if after is not None:
        query = query.where(newer_first_after(schedules, after))
    query = query.order_by(schedules.c.created_at.desc(), schedules.c.id.desc()).limit(limit)
    return [_schedule(row) for row in await conn.execute(query)]


async def replace_spec(
    conn: AsyncConnection,
    schedule_id: str,
    spec: ScheduleSpec,
    next_fire_at: datetime | None,
    now: datetime,
) -> bool:
    """False if the owner has another schedule by the new name. A time
    buffered under the old spec is dropped with it."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(
                    next_fire_at=next_fire_at,
                    buffered_at=None,
                    updated_at=now,
                    **_spec_values(spec),
                )
            )
    except IntegrityError:
        return False
    return True


async def set_state(conn: AsyncConnection, schedule_id: str, **values: Any) -> None:
    """Change where a schedule stands (paused, note, next_fire_at, buffered_at,
    last_*), without touching updated_at unless given."""
    await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))


async def remove(conn: AsyncConnection, schedule_id: str) -> None:
    await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))


@dataclass(frozen=True)
class Candidate:
    """Enough of a schedule to tell whether it is due: read without locks."""

    id: str
    next_fire_at: datetime | None
    jitter_seconds: int
    buffered: bool


async def candidates(
    conn: AsyncConnection, until: datetime, limit: int, offset: int = 0
) -> list[Candidate]:
    """Unpaused schedules whose next time comes by `until`, and those
    holding a buffered time: a page of them."""
    query = (
        select(
            schedules.c.id,
            schedules.c.next_fire_at,
            schedules.c.jitter_seconds,
            schedules.c.buffered_at,
        )
        .where(
            schedules.c.paused.is_(False),
            or_(schedules.c.next_fire_at <= until, schedules.c.buffered_at.is_not(None)),
        )
        .order_by(schedules.c.next_fire_at, schedules.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [
        Candidate(row.id, row.next_fire_at, row.jitter_seconds, row.buffered_at is not None)
        for row in await conn.execute(query)
    ]


async def lock_due(conn: AsyncConnection, schedule_ids: Collection[str]) -> list[Schedule]:
    """Those of the schedules no other transaction holds, locked and read
    afresh, unpaused ones only, in id order."""
    query = (
        select(schedules)
        .where(schedules.c.id.in_(sorted(schedule_ids)), schedules.c.paused.is_(False))
        .order_by(schedules.c.id)
        .with_for_update(skip_locked=True)
    )
    return [_schedule(row) for row in await conn.execute(query)]


async def fired_times(
    conn: AsyncConnection, schedule_id: str, times: Sequence[datetime]
) -> set[datetime]:
    """Those of `times` for which the schedule already started a task or run."""
    if not times:
        return set()
    query = union(
        select(tasks.c.scheduled_at).where(
            tasks.c.schedule_id == schedule_id, tasks.c.scheduled_at.in_(times)
        ),
        select(workflow_runs.c.scheduled_at).where(
            workflow_runs.c.schedule_id == schedule_id, workflow_runs.c.scheduled_at.in_(times)
        ),
    )
    return set((await conn.execute(query)).scalars())


async def unfinished(conn: AsyncConnection, task_id: str | None, run_id: str | None) -> bool:
    """Whether the task or run a fire started is still going (a deleted one
    is not)."""
    if task_id is not None:
        status = await conn.scalar(select(tasks.c.status).where(tasks.c.id == task_id))
        if status in _UNFINISHED:
            return True
    if run_id is not None:
        status = await conn.scalar(
            select(workflow_runs.c.status).where(workflow_runs.c.id == run_id)
        )
        if status == RunStatus.RUNNING.value:
            return True
    return False
