"""What `orchestrator status` reads from the database: queue depth by type,
the longest-waiting tasks, and (on PostgreSQL) the replicas connected.

Each is one statement an index answers: a status call costs a few index
reads whatever the backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import Task, TaskStatus
from orchestrator.store import tasks as task_store
from orchestrator.store.database import APPLICATION_PREFIX
from orchestrator.store.schema import tasks

QUEUED = TaskStatus.QUEUED


@dataclass(frozen=True)
class QueueDepth:
    type: str
    queued: int
    # Not due yet: a start time or a retry's backoff ahead.
    not_due: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class ConnectedReplica:
    id: str
    connected_since: datetime
    connections: int


async def queue_depths(
    conn: AsyncConnection, now: datetime, *, owner_id: str | None = None
) -> list[QueueDepth]:
    """QUEUED tasks by type, with how many are not due and the longest queued.
    Every column read is in the dispatch index (status, type, …, queued_at,
    id, available_at): a range of the index, never the table. With an
    owner, only that owner's tasks: then each queued row is read too, as the
    index does not hold owners."""
    conditions = [tasks.c.status == QUEUED]
    if owner_id is not None:
        conditions.append(tasks.c.owner_id == owner_id)
    not_due = func.sum(case((tasks.c.available_at > now, 1), else_=0))
    query = (
        select(
            tasks.c.type,
            func.count().label("queued"),
            not_due.label("not_due"),
            func.min(tasks.c.queued_at).label("oldest"),
        )
        .where(*conditions)
        .group_by(tasks.c.type)
        .order_by(tasks.c.type)
    )
    return [
        QueueDepth(row.type, row.queued, int(row.not_due or 0), row.oldest)
        for row in await conn.execute(query)
    ]


async def oldest_queued(conn: AsyncConnection, limit: int) -> list[tuple[Task, datetime | None]]:
    """The `limit` QUEUED tasks created first, with when each was queued.
    By creation, not queue time: the (status, created_at) index gives that
    order, where queue time would sort the whole queue."""
    query = (
        select(tasks.c.id, tasks.c.queued_at)
        .where(tasks.c.status == QUEUED)
        .order_by(tasks.c.created_at, tasks.c.id)
        .limit(limit)
    )
    queued_at = {row.id: row.queued_at for row in await conn.execute(query)}
    found = await task_store.attempts(conn, list(queued_at))
    # A task started or cancelled between the two reads is left out.
    return [(found[i], queued_at[i]) for i in queued_at if i in found]


async def connected_replicas(conn: AsyncConnection) -> list[ConnectedReplica] | None:
    """The replicas with connections open to this database, earliest first,
    told apart by their connections' application_name; None on SQLite, where
    no other replica can be seen (nor can one share the work)."""
    if conn.dialect.name != "postgresql":
        return None
    query = text(
        "SELECT substr(application_name, :start) AS id, min(backend_start) AS since, "
        "count(*) AS connections FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE :pattern "
        "GROUP BY application_name ORDER BY since, id"
    )
    rows = await conn.execute(
        query, {"start": len(APPLICATION_PREFIX) + 1, "pattern": APPLICATION_PREFIX + "%"}
    )
    return [ConnectedReplica(row.id, row.since, row.connections) for row in rows]
