"""Retention: the SQL that deletes finished tasks and workflow runs past
their age, and the records of schedule fires as old, a bounded batch per
call, oldest first.

Events go with what they belong to by ON DELETE CASCADE (task_events to
tasks; run_nodes and workflow_events to workflow_runs), which PostgreSQL
always honours and SQLite does with `PRAGMA foreign_keys=ON` (set on every
connection). A run's tasks have no foreign key to it: they are deleted with
their run, never on their own while the run is kept, since its nodes name
them. A task whose run is gone (deleted with its workflow) is on its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import TERMINAL, RunStatus
from orchestrator.store import runs
from orchestrator.store.schema import schedule_fires, tasks, workflow_runs


async def delete_tasks(conn: AsyncConnection, finished_before: datetime, limit: int) -> int:
    """Delete up to `limit` finished tasks that finished before
    `finished_before` and belong to no stored run (none, or one deleted with
    its workflow); how many were deleted."""
    of_no_run = or_(
        tasks.c.workflow_run_id.is_(None),
        ~exists().where(workflow_runs.c.id == tasks.c.workflow_run_id),
    )
    oldest = (
        select(tasks.c.id)
        .where(
            tasks.c.finished_at < finished_before,
            tasks.c.status.in_([status.value for status in TERMINAL]),
            of_no_run,
        )
        .order_by(tasks.c.finished_at)
        .limit(limit)
    )
    result = await conn.execute(delete(tasks).where(tasks.c.id.in_(oldest.scalar_subquery())))
    return result.rowcount


async def delete_runs(conn: AsyncConnection, finished_before: datetime, limit: int) -> int:
    """Delete up to `limit` finished runs that finished before
    `finished_before`, with their nodes, events and tasks (a run ends only
    once its tasks have: it cancels those still going); how many runs."""
    oldest = (
        select(workflow_runs.c.id)
        .where(
            workflow_runs.c.finished_at < finished_before,
            workflow_runs.c.status != RunStatus.RUNNING.value,
        )
        .order_by(workflow_runs.c.finished_at)
        .limit(limit)
    )
    run_ids = list(await conn.scalars(oldest))
    if not run_ids:
        return 0
    await conn.execute(delete(tasks).where(tasks.c.id.in_(runs.task_ids_of(run_ids))))
    await conn.execute(delete(workflow_runs).where(workflow_runs.c.id.in_(run_ids)))
    return len(run_ids)


async def delete_fires(conn: AsyncConnection, fired_before: datetime, limit: int) -> int:
    """Forget up to `limit` records of schedule fires for times before
    `fired_before`, oldest first (no schedule fires such a time again:
    BackfillSchedule refuses times past the retention age)."""
    oldest = (
        select(schedule_fires.c.schedule_id, schedule_fires.c.scheduled_at)
        .where(schedule_fires.c.scheduled_at < fired_before)
        .order_by(schedule_fires.c.scheduled_at)
        .limit(limit)
    )
    pair = tuple_(schedule_fires.c.schedule_id, schedule_fires.c.scheduled_at)
    result = await conn.execute(delete(schedule_fires).where(pair.in_(oldest)))
    return result.rowcount
