"""The claim by type (store/tasks.py `claim`, its SQL in store/claiming.py)
on the selected backend: which tasks it takes and in what order across
several types, and that its cost follows what it claims, not the backlog of
other types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import NewTask, Task, TaskStatus
from orchestrator.store import Database
from orchestrator.store import tasks as task_store
from orchestrator.store import users as user_store
from orchestrator.store.schema import tasks
from tests.support.database import backend

T = TypeVar("T")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
postgres_only = pytest.mark.skipif(backend() != "postgres", reason="locks between replicas")


@dataclass(frozen=True)
class Queued:
    id: str
    type: str
    priority: int
    queued_at: datetime


async def queue(
    database: Database,
    owner_id: str,
    kind: str,
    count: int,
    *,
    priority: int = 0,
    at: datetime = T0,
) -> list[Queued]:
    """`count` queued tasks of one kind, one microsecond apart from `at`."""
    made: list[Task] = []
    async with database.write() as conn:
        for k in range(count):
            new = NewTask(title="t", type=kind, input={}, start=True, priority=priority)
            row = task_store.NewRow(owner_id, new)
            made += await task_store.insert_many(conn, [row], at + timedelta(microseconds=k))
    return [
        Queued(t.id, t.type, t.priority, at + timedelta(microseconds=k)) for k, t in enumerate(made)
    ]


def in_dispatch_order(queued: Sequence[Queued]) -> list[str]:
    return [q.id for q in sorted(queued, key=lambda q: (-q.priority, q.queued_at, q.id))]


async def claim(
    conn: AsyncConnection,
    types: Sequence[str],
    slots: int,
    *,
    owner_id: str | None = None,
    worker: str = "w1",
) -> list[Task]:
    return (
        await task_store.claim(
            conn,
            slots=[(worker, slots)],
            types=types,
            owner_id=owner_id,
            now=NOW,
            lease_expires_at=NOW + timedelta(minutes=1),
        )
    ).started


@pytest.fixture
async def owner(database: Database) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, "owner", "unused-hash", "member")).id


@pytest.fixture
async def other_owner(database: Database) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, "other", "unused-hash", "member")).id


# -- which tasks, in what order -------------------------------------------------


async def test_claim_merges_types_by_priority_then_age(database: Database, owner: str) -> None:
    # Each type's own order differs from the merged one: a late urgent "b"
    # goes before every "a", and the "a"s and "c"s interleave in time.
    a = await queue(database, owner, "a", 6, at=T0)
    c = await queue(database, owner, "c", 4, at=T0 - timedelta(seconds=1))
    b_urgent = await queue(database, owner, "b", 2, priority=5, at=T0 + timedelta(hours=1))
    b = await queue(database, owner, "b", 3, at=T0 + timedelta(seconds=1))
    await queue(database, owner, "not-served", 5, priority=9)
    expected = in_dispatch_order(a + b + b_urgent + c)

    async with database.write() as conn:
        first = await claim(conn, ["a", "b", "c"], 7)
    async with database.write() as conn:
        rest = await claim(conn, ["c", "b", "a"], 100)

    assert [t.id for t in first] == expected[:7]
    assert [t.id for t in rest] == expected[7:]
    assert expected[:2] == [q.id for q in b_urgent]
    assert expected[2:6] == [q.id for q in c]


async def test_claim_leaves_tasks_in_backoff_and_of_other_owners(
    database: Database, owner: str, other_owner: str
) -> None:
    mine = await queue(database, owner, "a", 4)
    theirs = await queue(database, other_owner, "a", 4, priority=3)
    backing_off = mine[:2]
    async with database.write() as conn:
        await conn.execute(
            update(tasks)
            .where(tasks.c.id.in_([q.id for q in backing_off]))
            .values(available_at=NOW + timedelta(seconds=30))
        )

    async with database.write() as conn:
        claimed = await claim(conn, ["a"], 10, owner_id=owner)
    assert [t.id for t in claimed] == [q.id for q in mine[2:]]

    async with database.write() as conn:
        claimed = await claim(conn, ["a"], 10)
    assert [t.id for t in claimed] == [q.id for q in theirs]


async def test_claimed_tasks_are_running_once_each(database: Database, owner: str) -> None:
    queued = await queue(database, owner, "a", 3) + await queue(database, owner, "b", 3)
    async with database.write() as conn:
        claimed = (
            await task_store.claim(
                conn,
                slots=[("w1", 2), ("w2", 10)],
                types=["a", "b", "a", "b"],  # a type twice is still one queue
                owner_id=None,
                now=NOW,
                lease_expires_at=NOW + timedelta(minutes=1),
            )
        ).started
    assert [t.id for t in claimed] == in_dispatch_order(queued)
    assert [t.worker_id for t in claimed] == ["w1", "w2", "w1", "w2", "w2", "w2"]
    async with database.read() as conn:
        stored = [await task_store.get(conn, t.id) for t in claimed]
    for before, after in zip(claimed, stored, strict=True):
        assert after is not None
        assert (after.status, after.worker_id, after.attempt, after.fencing_token) == (
            TaskStatus.RUNNING,
            before.worker_id,
            1,
            1,
        )
        assert after.last_sequence == before.last_sequence == 2
    async with database.write() as conn:
        assert await claim(conn, ["a", "b"], 10) == []


async def test_claim_serves_more_types_than_a_worker_may_declare(
    database: Database, owner: str
) -> None:
    queued = await queue(database, owner, "t-7", 2) + await queue(database, owner, "t-599", 2)
    types = [f"t-{k}" for k in range(600)]
    async with database.write() as conn:
        claimed = await claim(conn, types, 10)
    assert [t.id for t in claimed] == in_dispatch_order(queued)


@postgres_only
async def test_replicas_claiming_at_once_take_the_head_of_the_queue_once(
    database: Database, owner: str
) -> None:
    queued = await queue(database, owner, "a", 12) + await queue(database, owner, "b", 12)
    expected = in_dispatch_order(queued)
    async with database.write() as first:
        taken_first = await claim(first, ["a", "b"], 5, worker="w1")
        # The second claim runs while the first still holds its rows: it
        # skips them and still fills up, from the next ones in order.
        async with database.write() as second:
            taken_second = await claim(second, ["b", "a"], 5, worker="w2")
    assert [t.id for t in taken_first] == expected[:5]
    assert [t.id for t in taken_second] == expected[5:10]


# -- cost: what is claimed, not the backlog ------------------------------------


class RolledBack(Exception):
    """Ends a transaction of the test without committing it."""


async def rolled_back(database: Database, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    done: list[T] = []
    with pytest.raises(RolledBack):
        async with database.write() as conn:
            done.append(await work(conn))
            raise RolledBack
    return done[0]


async def work_of_claim(conn: AsyncConnection, types: Sequence[str]) -> int:
    """The work a claim of 10 makes the database do: SQLite's virtual machine
    instructions, or the rows PostgreSQL reads from `tasks`."""
    if conn.dialect.name == "sqlite":
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.set_progress_handler(count, 1)
        try:
            await claim(conn, types, 10)
        finally:
            await driver.set_progress_handler(None, 1)
        return steps[0]
    read = text(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
        " FROM pg_stat_xact_user_tables WHERE relname = 'tasks'"
    )
    before = int(await conn.scalar(read) or 0)
    await claim(conn, types, 10)
    return int(await conn.scalar(read) or 0) - before


async def test_claim_cost_does_not_grow_with_another_types_backlog(
    database: Database, owner: str
) -> None:
    await queue(database, owner, "rare", 3, at=T0 + timedelta(hours=1))
    await queue(database, owner, "common", 20)
    workers = (["rare"], ["common", "rare"], ["common"])
    small = [await rolled_back(database, partial(work_of_claim, types=t)) for t in workers]
    await queue(database, owner, "common", 4000, at=T0 + timedelta(seconds=1))
    if database.dialect == "postgresql":
        async with database.write() as conn:
            await conn.execute(text("ANALYZE tasks"))
    large = [await rolled_back(database, partial(work_of_claim, types=t)) for t in workers]
    # Reading the common type's backlog (4,000 rows) would cost many times
    # more; a few extra steps are allowed for a deeper index.
    for types, before, after in zip(workers, small, large, strict=True):
        assert after <= before * 1.2 + 20, (types, before, after)


async def plan(database: Database, types: Sequence[str], *, generic: bool = False) -> str:
    """The plan of the claim's SELECT (generic: the plan PostgreSQL makes for
    a prepared statement without the parameters' values, which it may
    switch to after a few runs)."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        await rolled_back(database, lambda conn: claim(conn, types, 10))
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    statement, parameters = seen[0]

    async def explained(conn: AsyncConnection) -> list[str]:
        if database.dialect == "sqlite":
            rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        elif generic:
            await conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.exec_driver_sql("PREPARE claim_plan AS " + statement)
            rows = await conn.exec_driver_sql("EXPLAIN EXECUTE claim_plan" + _values(parameters))
            await conn.exec_driver_sql("DEALLOCATE claim_plan")
        else:
            rows = await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
        return [str(row[-1]) for row in rows]

    return "\n".join(await rolled_back(database, explained))


def _values(parameters: Sequence[Any]) -> str:
    """The parameters as literals: EXECUTE takes no bound parameters."""

    def literal(value: Any) -> str:
        if isinstance(value, list):
            return f"ARRAY[{', '.join(literal(v) for v in value)}]::varchar[]"
        if isinstance(value, int):
            return str(value)
        text = value.isoformat() if isinstance(value, datetime) else str(value)
        return "'" + text.replace("'", "''") + "'"

    return "(" + ", ".join(literal(v) for v in parameters) + ")"


@pytest.mark.parametrize("types", [["rare"], ["common", "rare"], ["common"]])
async def test_claim_plan_reads_each_type_from_the_typed_index(
    database: Database, owner: str, types: list[str]
) -> None:
    await queue(database, owner, "common", 3000)
    await queue(database, owner, "rare", 3, at=T0 + timedelta(hours=1))
    if database.dialect == "postgresql":
        async with database.write() as conn:
            await conn.execute(text("ANALYZE tasks"))
    plans = [await plan(database, types)]
    if database.dialect == "postgresql":
        plans.append(await plan(database, types, generic=True))
    for chosen in plans:
        assert "ix_tasks_dispatch_order_by_type" in chosen, chosen
        # The index searched by status and type, under either database's words
        # (PostgreSQL writes the type's cast on one side or the other).
        assert (
            "ix_tasks_dispatch_order_by_type (status=? AND type=?)" in chosen
            if database.dialect == "sqlite"
            else any(
                "Index Cond: ((status = " in line and "type" in line for line in chosen.splitlines()
            )
        ), chosen
        # No pass over the whole table, under either database's words for it.
        assert "Seq Scan" not in chosen, chosen
        assert not any(
            line.startswith(("SCAN tasks", "SCAN queued")) for line in chosen.splitlines()
        )
