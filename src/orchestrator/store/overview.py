"""What the dashboard's overview reads: tasks by status, tasks finished per
minute, the latest failures, and what runs by type (store/status.py has
what waits).

Each read takes an owner: given one, only that owner's tasks count (a
member sees its own); None counts everyone's (an admin).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import Task, TaskStatus
from orchestrator.store import tasks as task_store
from orchestrator.store.schema import tasks

# How both dialects write a finished task's minute, in UTC.
_MINUTE_FORMAT = "%Y-%m-%d %H:%M"
_FAILED_OR_CANCELLED = (TaskStatus.FAILED, TaskStatus.CANCELLED)


def _owned(owner_id: str | None) -> list[ColumnElement[bool]]:
    return [] if owner_id is None else [tasks.c.owner_id == owner_id]


async def counts(conn: AsyncConnection, owner_id: str | None) -> dict[TaskStatus, int]:
    """How many tasks are in each status; every status present, zeros too."""
    query = (
        select(tasks.c.status, func.count().label("tasks"))
        .where(*_owned(owner_id))
        .group_by(tasks.c.status)
    )
    found = {TaskStatus(row.status): row.tasks for row in await conn.execute(query)}
    return {status: found.get(status, 0) for status in TaskStatus}


def _minute(conn: AsyncConnection) -> ColumnElement[str]:
    """finished_at's UTC minute as text. Truncated, never rounded: SQLite's
    strftime drops what is below the millisecond, PostgreSQL's to_char the
    seconds, so a task finished just before a minute ends stays in it."""
    if conn.dialect.name == "postgresql":
        in_utc = tasks.c.finished_at.op("AT TIME ZONE")(literal_column("'UTC'"))
        return func.to_char(in_utc, "YYYY-MM-DD HH24:MI")
    return func.strftime(_MINUTE_FORMAT, tasks.c.finished_at)


async def finished_per_minute(
    conn: AsyncConnection, owner_id: str | None, start: datetime, end: datetime
) -> dict[datetime, tuple[int, int]]:
    """Tasks finished from `start` to before `end` by UTC minute: how many
    succeeded and how many failed or were cancelled. Minutes in which none
    finished are left out. The range is read through the finished_at index."""
    finished = (
        select(_minute(conn).label("minute"), tasks.c.status)
        .where(tasks.c.finished_at >= start, tasks.c.finished_at < end, *_owned(owner_id))
        .subquery()
    )
    # Grouped outside: PostgreSQL would not see the bound format in the
    # SELECT and in the GROUP BY as one expression.
    query = select(
        finished.c.minute,
        func.sum(case((finished.c.status == TaskStatus.SUCCEEDED, 1), else_=0)).label("ok"),
        func.sum(case((finished.c.status.in_(_FAILED_OR_CANCELLED), 1), else_=0)).label("bad"),
    ).group_by(finished.c.minute)
    return {
        datetime.strptime(row.minute, _MINUTE_FORMAT).replace(tzinfo=UTC): (
            int(row.ok),
            int(row.bad),
        )
        for row in await conn.execute(query)
    }


async def recent_failures(conn: AsyncConnection, owner_id: str | None, limit: int) -> list[Task]:
    """The `limit` tasks that failed last, the latest first."""
    query = (
        select(tasks.c.id)
        .where(tasks.c.status == TaskStatus.FAILED, *_owned(owner_id))
        .order_by(tasks.c.finished_at.desc(), tasks.c.id.desc())
        .limit(limit)
    )
    ids = list(await conn.scalars(query))
    found = await task_store.attempts(conn, ids)
    # One run again or deleted between the two reads is left out.
    return [found[i] for i in ids if i in found and found[i].status is TaskStatus.FAILED]


async def running_by_type(conn: AsyncConnection, owner_id: str | None) -> dict[str, int]:
    """How many tasks of each type are running."""
    query = (
        select(tasks.c.type, func.count().label("running"))
        .where(tasks.c.status == TaskStatus.RUNNING, *_owned(owner_id))
        .group_by(tasks.c.type)
    )
    return {row.type: row.running for row in await conn.execute(query)}
