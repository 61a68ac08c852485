"""Tasks: the SQL behind creating, claiming and finishing them.

Every change goes through a conditional UPDATE … RETURNING that also bumps
`last_sequence`, so the caller gets the row as it now is and the sequence
number of the event it must append in the same transaction. A change whose
condition no longer holds (another attempt won, the task was cancelled)
touches nothing and returns None.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.errors import Aborted
from orchestrator.model import (
    Concurrency,
    ConcurrencyStrategy,
    NewTask,
    Origin,
    RateLimit,
    Task,
    TaskStatus,
)
from orchestrator.store import claiming, failures, limits
from orchestrator.store.schema import tasks
from orchestrator.store.types import newer_first_after

NEXT_SEQUENCE = tasks.c.last_sequence + 1
# Ids per IN list: well under SQLite's limit of bound parameters.
_IN_CHUNK = 500


def _task(row: Any) -> Task:
    return Task(
        id=row.id,
        owner_id=row.owner_id,
        title=row.title,
        type=row.type,
        status=TaskStatus(row.status),
        input=row.input,
        output=row.output,
        error=row.error,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        timeout_seconds=row.timeout_seconds,
        priority=row.priority,
        description=row.description,
        labels=row.labels,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        progress=row.progress,
        progress_message=row.progress_message,
        worker_id=row.worker_id,
        fencing_token=row.fencing_token,
        last_sequence=row.last_sequence,
        lease_expires_at=row.lease_expires_at,
        deadline_at=row.deadline_at,
        workflow_run_id=row.workflow_run_id,
        node_id=row.node_id,
        lost_deliveries=row.lost_deliveries,
        not_before=row.not_before,
        concurrency=_concurrency(row),
        rate_limit=RateLimit(row.rate_bucket, row.rate_limit, row.rate_period_seconds)
        if row.rate_bucket is not None
        else None,
        origin=Origin(row.schedule_id, row.scheduled_at) if row.schedule_id is not None else None,
        available_at=row.available_at,
        trace_context=row.trace_context,
    )


def _concurrency(row: Any) -> Concurrency | None:
    if row.concurrency_key is None:
        return None
    strategy = ConcurrencyStrategy(row.concurrency_strategy)
    return Concurrency(row.concurrency_key, row.concurrency_limit, strategy)


@dataclass(frozen=True)
class NewRow:
    """A task to insert: what was asked for, by whom, and for which run or
    schedule."""

    owner_id: str
    new: NewTask
    workflow_run_id: str | None = None
    node_id: str | None = None
    origin: Origin | None = None
    trace_context: str | None = None


def available_at(new: NewTask, now: datetime) -> datetime:
    """When a task queued `now` may first be claimed."""
    return max(now, new.not_before) if new.not_before is not None else now


def _values(row: NewRow, now: datetime) -> dict[str, Any]:
    new = row.new
    concurrency, rate, origin = new.concurrency, new.rate_limit, row.origin
    return {
        "id": str(uuid.uuid4()),
        "owner_id": row.owner_id,
        "title": new.title,
        "type": new.type,
        "description": new.description,
        "labels": new.labels,
        "priority": new.priority,
        "dispatch_rank": -new.priority,
        "status": TaskStatus.QUEUED if new.start else TaskStatus.PENDING,
        "input": new.input,
        "output": None,
        "error": "",
        "attempt": 0,
        "max_attempts": new.max_attempts,
        "lost_deliveries": 0,
        "timeout_seconds": new.timeout_seconds,
        "idempotency_key": new.idempotency_key,
        "created_at": now,
        "updated_at": now,
        "queued_at": now if new.start else None,
        "available_at": available_at(new, now) if new.start else None,
        "started_at": None,
        "finished_at": None,
        "progress": 0,
        "progress_message": "",
        "worker_id": None,
        "fencing_token": 0,
        "lease_expires_at": None,
        "deadline_at": None,
        "last_sequence": 1 if new.start else 0,
        "workflow_run_id": row.workflow_run_id,
        "node_id": row.node_id,
        "not_before": new.not_before,
        "concurrency_key": concurrency.key if concurrency else None,
        "concurrency_limit": concurrency.limit if concurrency else None,
        "concurrency_strategy": concurrency.strategy if concurrency else None,
        "rate_bucket": rate.bucket if rate else None,
        "rate_limit": rate.limit if rate else None,
        "rate_period_seconds": rate.period_seconds if rate else None,
        "schedule_id": origin.schedule_id if origin else None,
        "scheduled_at": origin.scheduled_at if origin else None,
        "trace_context": row.trace_context,
    }


async def insert_many(conn: AsyncConnection, rows: Sequence[NewRow], now: datetime) -> list[Task]:
    """The new tasks, QUEUED with their first event's sequence where
    `new.start`. One statement for all of them: the rows are known here, so
    nothing needs to come back from the database."""
    values = [_values(row, now) for row in rows]
    if values:
        await conn.execute(tasks.insert(), values)
    return [_task(SimpleNamespace(**v)) for v in values]


async def insert_new(
    conn: AsyncConnection, rows: Sequence[NewRow], now: datetime
) -> list[tuple[Task, bool]]:
    """Each row's task, and whether this call created it: a row whose owner
    already has a task with its idempotency key (stored, or earlier in
    `rows`) gets that task instead. One INSERT for all the rows, then one
    read for those that met an existing key."""
    values: list[dict[str, Any]] = []
    first: dict[tuple[str, str], int] = {}
    # For each row: the index in `values` of the row that stands for it, and
    # whether it is that row (not a repeat of a key earlier in `rows`).
    stands_for: list[tuple[int, bool]] = []
    for row in rows:
        key = row.new.idempotency_key
        if key and (row.owner_id, key) in first:
            stands_for.append((first[(row.owner_id, key)], False))
            continue
        if key:
            first[(row.owner_id, key)] = len(values)
        stands_for.append((len(values), True))
        values.append(_values(row, now))
    inserted: set[str] = set()
    if values:
        statement = _insert_unless_key_taken(conn).returning(tasks.c.id)
        inserted = set((await conn.execute(statement, values)).scalars())
    taken = [(v["owner_id"], v["idempotency_key"]) for v in values if v["id"] not in inserted]
    existing = await _by_keys(conn, taken)
    if len(existing) < len(set(taken)):
        # The task that held a key was deleted in between: run it again.
        raise Aborted(failures.CONFLICT)
    outcomes = [
        (_task(SimpleNamespace(**v)), True)
        if v["id"] in inserted
        else (existing[(v["owner_id"], v["idempotency_key"])], False)
        for v in values
    ]
    return [(outcomes[index][0], outcomes[index][1] and itself) for index, itself in stands_for]


def _insert_unless_key_taken(conn: AsyncConnection) -> Any:
    """INSERT … ON CONFLICT DO NOTHING on the owner's idempotency key, in the
    dialect's own words (rows without a key never conflict: NULLs differ)."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(tasks).on_conflict_do_nothing(
        index_elements=[tasks.c.owner_id, tasks.c.idempotency_key]
    )


async def _by_keys(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], Task]:
    key = tuple_(tasks.c.owner_id, tasks.c.idempotency_key)
    return {(t.owner_id, t.idempotency_key or ""): t for t in await _where_in(conn, key, keys)}


async def get(conn: AsyncConnection, task_id: str) -> Task | None:
    row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
    return _task(row) if row else None


async def page(
    conn: AsyncConnection,
    *,
    owner_id: str | None,
    status: TaskStatus | None,
    type: str | None,
    label: tuple[str, str] | None,
    title_contains: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Task]:
    """Newest first, after the (created_at, id) cursor: keyset pagination, so
    rows inserted meanwhile never shift a page."""
    conditions: list[ColumnElement[bool]] = []
    if owner_id is not None:
        conditions.append(tasks.c.owner_id == owner_id)
    if status is not None:
        conditions.append(tasks.c.status == status)
    if type is not None:
        conditions.append(tasks.c.type == type)
    if label is not None:
        conditions.append(tasks.c.labels[label[0]].as_string() == label[1])
    if title_contains is not None:
        conditions.append(_title_contains(conn, title_contains))
    if after is not None:
        conditions.append(newer_first_after(tasks, after))
    query = (
        select(tasks)
        .where(*conditions)
        .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        .limit(limit)
    )
    return [_task(row) for row in await conn.execute(query)]


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _title_contains(conn: AsyncConnection, text: str) -> ColumnElement[bool]:
    """The title holds `text`, ignoring case, the user's `%`, `_` and `\\`
    meaning only themselves. Case is folded for ASCII letters only, on both
    sides and on both dialects: SQLite's lower() knows no other letters,
    and PostgreSQL's "C" collation makes its lower() agree whatever the
    database's locale, so a search finds the same tasks on either."""
    escaped = text.translate(_ASCII_LOWER)
    for special in ("\\", "%", "_"):
        escaped = escaped.replace(special, "\\" + special)
    title: ColumnElement[str] = tasks.c.title
    if conn.dialect.name == "postgresql":
        title = title.collate("C")
    return func.lower(title).like(f"%{escaped}%", escape="\\")


async def change(
    conn: AsyncConnection,
    task_id: str,
    values: dict[str, Any],
    *,
    statuses: Collection[TaskStatus] | None = None,
    fencing_token: int | None = None,
    worker_id: str | None = None,
) -> Task | None:
    """Apply `values` if the task is in one of `statuses` (and at this
    fencing token, held by this worker); bumps the sequence. None when the
    condition fails."""
    if "priority" in values:
        values = {**values, "dispatch_rank": -values["priority"]}
    conditions = [tasks.c.id == task_id]
    if statuses is not None:
        conditions.append(tasks.c.status.in_([s.value for s in statuses]))
    if fencing_token is not None:
        conditions.append(tasks.c.fencing_token == fencing_token)
    if worker_id is not None:
        conditions.append(tasks.c.worker_id == worker_id)
    statement = (
        update(tasks)
        .where(*conditions)
        .values(**values, last_sequence=NEXT_SEQUENCE)
        .returning(tasks)
    )
    row = (await conn.execute(statement)).first()
    return _task(row) if row else None


async def claim(
    conn: AsyncConnection,
    *,
    slots: Sequence[tuple[str, int]],
    types: Sequence[str],
    owner_id: str | None,
    now: datetime,
    lease_expires_at: datetime,
) -> limits.Claim:
    """Queued tasks of these types, highest priority then oldest first, now
    RUNNING: up to `count` for each `(worker_id, count)`, dealt out in turn.
    Two statements whatever the number of workers or types, while the first
    rows read name no concurrency key or rate bucket: the rows are read
    (and, on PostgreSQL, locked, skipping those another replica is claiming;
    SQLite has one writer), and then changed as read. Otherwise
    store/limits.py picks among them and reads on."""
    wanted = sum(count for _, count in slots)
    by_owner = owner_id is not None
    parameters = {
        "claim_types": sorted(set(types)),
        "claim_owner": owner_id,
        "claim_now": now,
        "claim_wanted": wanted,
        "claim_candidates": 2 * wanted,
    }
    rows: Sequence[Any] = (
        await conn.execute(claiming.chosen(conn.dialect.name, by_owner=by_owner), parameters)
    ).all()
    choice = None
    if any(limits.limited(row) for row in rows):
        choice = await limits.choose(
            conn, rows, parameters, wanted=wanted, by_owner=by_owner, now=now
        )
        rows, now = choice.started, choice.now
    claimed = [
        replace(
            _task(row),
            status=TaskStatus.RUNNING,
            worker_id=worker_id,
            attempt=row.attempt + 1,
            fencing_token=row.fencing_token + 1,
            started_at=now,
            updated_at=now,
            lease_expires_at=lease_expires_at,
            deadline_at=now + timedelta(seconds=row.timeout_seconds)
            if row.timeout_seconds
            else None,
            progress=0,
            progress_message="",
            last_sequence=row.last_sequence + 1,
        )
        for row, worker_id in zip(rows, _dealt(slots), strict=False)
    ]
    if claimed:
        await conn.execute(
            claiming.START,
            [
                {
                    "claimed_id": t.id,
                    "claimed_by": t.worker_id,
                    "claimed_at": now,
                    "lease": lease_expires_at,
                    "deadline": t.deadline_at,
                }
                for t in claimed
            ],
        )
    if choice is None:
        return limits.Claim(claimed)
    cancel = [(_task(row), why) for row, why in choice.cancel_queued + choice.cancel_running]
    return limits.Claim(claimed, cancel, choice.wake_at, choice.key_full)


def _dealt(slots: Sequence[tuple[str, int]]) -> Iterator[str]:
    """Worker ids in turn, each as often as it has slots: a round of claims
    spreads over the workers instead of filling the first."""
    left = dict(slots)
    while left:
        for worker_id in list(left):
            yield worker_id
            left[worker_id] -= 1
            if not left[worker_id]:
                del left[worker_id]


async def held_by(conn: AsyncConnection, worker_id: str) -> list[Task]:
    query = select(tasks).where(
        tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.RUNNING
    )
    return [_task(row) for row in await conn.execute(query)]


async def extend_leases(conn: AsyncConnection, worker_id: str, until: datetime) -> None:
    await conn.execute(
        update(tasks)
        .where(tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.RUNNING)
        .values(lease_expires_at=until)
    )


async def overdue(conn: AsyncConnection, now: datetime, limit: int) -> list[Task]:
    """Running tasks whose lease expired or whose attempt ran past its timeout."""
    query = (
        select(tasks)
        .where(
            tasks.c.status == TaskStatus.RUNNING,
            or_(tasks.c.lease_expires_at < now, tasks.c.deadline_at < now),
        )
        .limit(limit)
    )
    return [_task(row) for row in await conn.execute(query)]


async def remove(conn: AsyncConnection, task_id: str, statuses: Collection[TaskStatus]) -> bool:
    """Delete the task (and its events) if it is in one of `statuses`."""
    result = await conn.execute(
        delete(tasks).where(tasks.c.id == task_id, tasks.c.status.in_([s.value for s in statuses]))
    )
    return result.rowcount == 1


async def attempts(conn: AsyncConnection, task_ids: Sequence[str]) -> dict[str, Task]:
    """The tasks with these ids, as they are now (missing ones left out)."""
    return {task.id: task for task in await _where_in(conn, tasks.c.id, task_ids)}


async def _where_in(conn: AsyncConnection, column: Any, values: Sequence[Any]) -> list[Task]:
    """The tasks whose `column` is one of `values`, read a chunk at a time."""
    found: list[Task] = []
    for start in range(0, len(values), _IN_CHUNK):
        query = select(tasks).where(column.in_(values[start : start + _IN_CHUNK]))
        found += [_task(row) for row in await conn.execute(query)]
    return found
