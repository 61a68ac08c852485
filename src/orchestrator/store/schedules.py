"""Schedules: their rows, and the SQL the fire loop uses to take due ones.

A fire is taken under the schedule's row lock: `lock_due` on PostgreSQL is
`SELECT … FOR UPDATE SKIP LOCKED`, so replicas share the due schedules
without waiting on each other, and each re-reads the row it locked (a time
another replica fired meanwhile is no longer due). SQLite renders no FOR
UPDATE: its single writer already serialises the transactions that fire.

The loop's reads each second are index range scans: due schedules by
`due_at`, and the few holding a buffered time by the partial index on
`buffered_at`. Schedules of disabled users do not fire.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
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
from orchestrator.store.schema import schedule_fires, schedules, tasks, users, workflow_runs
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


async def insert(conn: AsyncConnection, schedule: Schedule, due_at: datetime | None) -> bool:
    """False if the owner already has a schedule by this name. `due_at`:
    when its next_fire_at fires, jitter added."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                schedules.insert().values(
                    id=schedule.id,
                    owner_id=schedule.owner_id,
                    paused=schedule.paused,
                    note=schedule.note,
                    next_fire_at=schedule.next_fire_at,
                    due_at=due_at,
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
    due_at: datetime | None,
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
                    due_at=due_at,
                    buffered_at=None,
                    updated_at=now,
                    **_spec_values(spec),
                )
            )
    except IntegrityError:
        return False
    return True


async def set_state(conn: AsyncConnection, schedule_id: str, **values: Any) -> None:
    """Change where a schedule stands (paused, note, next_fire_at with its
    due_at, buffered_at, last_*), without touching updated_at unless given."""
    await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))


async def remove(conn: AsyncConnection, schedule_id: str) -> None:
    await conn.execute(delete(schedules).where(schedules.c.id == schedule_id))


@dataclass(frozen=True)
class Candidate:
    """A schedule whose next time comes soon: read without locks."""

    id: str
    due_at: datetime


def _firing() -> Any:
    """Unpaused schedules of enabled users."""
    return (
        schedules.join(users, users.c.id == schedules.c.owner_id),
        and_(schedules.c.paused.is_(False), users.c.disabled.is_(False)),
    )


async def candidates(
    conn: AsyncConnection, until: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[Candidate]:
    """A page of the schedules due by `until`, in (due_at, id) order after
    the keyset `after`: a schedule a fire moves on (out of the pages read
    so far) leaves none unread."""
    joined, firing = _firing()
    query = (
        select(schedules.c.id, schedules.c.due_at)
        .select_from(joined)
        .where(firing, schedules.c.due_at <= until)
        .order_by(schedules.c.due_at, schedules.c.id)
        .limit(limit)
    )
    if after is not None:
        due, last_id = after
        query = query.where(
            or_(schedules.c.due_at > due, and_(schedules.c.due_at == due, schedules.c.id > last_id))
        )
    return [Candidate(row.id, row.due_at) for row in await conn.execute(query)]


async def buffered_ready(conn: AsyncConnection, limit: int) -> list[str]:
    """Schedules holding a buffered time whose last fire's task and run
    have ended (or are gone): those a round can fire. One still running
    costs no transaction."""
    last_task = tasks.alias("last_task")
    last_run = workflow_runs.alias("last_run")
    joined, firing = _firing()
    joined = joined.outerjoin(last_task, last_task.c.id == schedules.c.last_task_id).outerjoin(
        last_run, last_run.c.id == schedules.c.last_run_id
    )
    query = (
        select(schedules.c.id)
        .select_from(joined)
        .where(
            firing,
            schedules.c.buffered_at.is_not(None),
            or_(last_task.c.status.is_(None), last_task.c.status.not_in(_UNFINISHED)),
            or_(last_run.c.status.is_(None), last_run.c.status != RunStatus.RUNNING.value),
        )
        .order_by(schedules.c.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def lock_due(conn: AsyncConnection, schedule_id: str) -> Schedule | None:
    """The schedule if no other transaction holds it, it is unpaused and
    its owner enabled: locked and read afresh."""
    joined, firing = _firing()
    query = (
        select(schedules)
        .select_from(joined)
        .where(schedules.c.id == schedule_id, firing)
        .with_for_update(of=schedules, skip_locked=True)
    )
    row = (await conn.execute(query)).first()
    return _schedule(row) if row else None


async def fired_times(
    conn: AsyncConnection, schedule_id: str, times: Sequence[datetime]
) -> set[datetime]:
    """Those of `times` the schedule already fired (its task or run may be
    gone since)."""
    if not times:
        return set()
    query = select(schedule_fires.c.scheduled_at).where(
        schedule_fires.c.schedule_id == schedule_id, schedule_fires.c.scheduled_at.in_(times)
    )
    return set((await conn.execute(query)).scalars())


async def record_fire(conn: AsyncConnection, schedule_id: str, time: datetime) -> None:
    await conn.execute(schedule_fires.insert().values(schedule_id=schedule_id, scheduled_at=time))


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
