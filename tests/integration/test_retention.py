"""Retention on the selected backend: finished tasks and runs past their age
are deleted with their events, in bounded batches; nothing else is.

Age is made honestly, without waiting: rows are written as the engine
writes them, then their finished_at is moved into the past by an UPDATE.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import ColumnElement, Table, func, select, update

from orchestrator.auth.identity import Identity
from orchestrator.config import Settings
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.events import REPLAY_BATCH
from orchestrator.engine.retention import Retention, Swept
from orchestrator.engine.runtime import Engine
from orchestrator.errors import NotFound
from orchestrator.model import (
    Definition,
    NewTask,
    NodeRun,
    NodeSpec,
    NodeStatus,
    RunStatus,
    TaskEvent,
    TaskEventType,
    TaskStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowRun,
)
from orchestrator.store import Database
from orchestrator.store import events as event_store
from orchestrator.store import retention as retention_store
from orchestrator.store import runs as run_store
from orchestrator.store import tasks as task_store
from orchestrator.store import users as user_store
from orchestrator.store import workflows as workflow_store
from orchestrator.store.locks import RETENTION_LOCK, try_lock
from orchestrator.store.schema import run_nodes, task_events, tasks, workflow_events, workflow_runs
from orchestrator.store.types import utcnow
from tests.support.database import backend

AGE_DAYS = 30
OLD = timedelta(days=AGE_DAYS + 10)
RECENT = timedelta(hours=1)


async def count(database: Database, table: Table, where: ColumnElement[bool]) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(where)) or 0)


async def task_ids(database: Database) -> set[str]:
    async with database.read() as conn:
        return set(await conn.scalars(select(tasks.c.id)))


@pytest.fixture
async def owner(database: Database) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, "alice", "hash-1", "member")).id


async def add_tasks(
    database: Database,
    owner_id: str,
    how_many: int = 1,
    *,
    status: TaskStatus = TaskStatus.SUCCEEDED,
    finished_ago: timedelta | None = OLD,
    run_id: str | None = None,
    events: int = 2,
) -> list[str]:
    """Tasks in `status` with `events` events each, finished `finished_ago`
    (the first one longest ago, one second apart); their ids, oldest first."""
    now = utcnow()
    rows = [
        task_store.NewRow(owner_id, NewTask(f"t{i}", "echo", {}), run_id, "a" if run_id else None)
        for i in range(how_many)
    ]
    async with database.write() as conn:
        ids = [task.id for task in await task_store.insert_many(conn, rows, now)]
        await event_store.append(
            conn,
            [
                TaskEvent(task_id, sequence, TaskEventType.PROGRESS, status, now)
                for task_id in ids
                for sequence in range(1, events + 1)
            ],
        )
        for age, task_id in enumerate(ids):
            finished_at = None
            if finished_ago is not None:
                finished_at = now - finished_ago - timedelta(seconds=how_many - age)
            await conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(status=status, last_sequence=events, finished_at=finished_at)
            )
    return ids


async def add_run(
    database: Database,
    owner_id: str,
    *,
    status: RunStatus,
    finished_ago: timedelta | None,
    task_finished_ago: timedelta = OLD,
    events: int = 3,
) -> tuple[str, str]:
    """A one-node run whose node ran a task (finished `task_finished_ago`),
    with `events` events, in `status`; (run id, task id)."""
    now = utcnow()
    run_id = str(uuid.uuid4())
    async with database.write() as conn:
        workflow = await workflow_store.create(
            conn,
            owner_id,
            f"wf-{run_id[:8]}",
            "",
            Definition(nodes=(NodeSpec("a", "echo"),), edges=()),
            now,
        )
        assert workflow is not None
        node = NodeRun("a", NodeStatus.SUCCEEDED, None, None, "", now, now)
        await run_store.insert(
            conn,
            WorkflowRun(
                run_id, workflow.id, 1, owner_id, status, {}, "", now, None, events, (node,)
            ),
        )
        await run_store.append(
            conn,
            [
                WorkflowEvent(run_id, 1, WorkflowEventType.RUN_STARTED, RunStatus.RUNNING, now),
                *(
                    WorkflowEvent(
                        run_id, sequence, WorkflowEventType.NODE_PROGRESS, RunStatus.RUNNING, now
                    )
                    for sequence in range(2, events)
                ),
                WorkflowEvent(run_id, events, WorkflowEventType.RUN_SUCCEEDED, status, now),
            ],
        )
    [task_id] = await add_tasks(database, owner_id, run_id=run_id, finished_ago=task_finished_ago)
    async with database.write() as conn:
        await run_store.set_node(conn, run_id, "a", task_id=task_id)
        if finished_ago is not None:
            await run_store.set_run(conn, run_id, finished_at=now - finished_ago)
    return run_id, task_id


async def run_rows(database: Database, run_id: str, task_id: str) -> tuple[int, int, int, int, int]:
    """How many rows of each kind the run still has: (run, nodes, run events,
    task, task events)."""
    return (
        await count(database, workflow_runs, workflow_runs.c.id == run_id),
        await count(database, run_nodes, run_nodes.c.run_id == run_id),
        await count(database, workflow_events, workflow_events.c.run_id == run_id),
        await count(database, tasks, tasks.c.id == task_id),
        await count(database, task_events, task_events.c.task_id == task_id),
    )


# -- tasks ---------------------------------------------------------------------


async def test_old_finished_tasks_go_with_their_events(database: Database, owner: str) -> None:
    old = [
        *await add_tasks(database, owner, status=TaskStatus.SUCCEEDED),
        *await add_tasks(database, owner, status=TaskStatus.FAILED),
        *await add_tasks(database, owner, status=TaskStatus.CANCELLED),
    ]
    kept = [
        *await add_tasks(database, owner, finished_ago=RECENT),
        # Created long ago (nothing here is young) but never finished.
        *await add_tasks(database, owner, status=TaskStatus.PENDING, finished_ago=None),
        *await add_tasks(database, owner, status=TaskStatus.QUEUED, finished_ago=None),
        *await add_tasks(database, owner, status=TaskStatus.RUNNING, finished_ago=None),
    ]

    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=3, runs=0)

    assert await task_ids(database) == set(kept)
    # The cascade did its work on this dialect: no event outlives its task.
    assert await count(database, task_events, task_events.c.task_id.in_(old)) == 0
    assert await count(database, task_events, task_events.c.task_id.in_(kept)) == 2 * len(kept)
    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=0, runs=0)


async def test_the_age_is_the_setting(database: Database, owner: str) -> None:
    [two_days] = await add_tasks(database, owner, finished_ago=timedelta(days=2))
    [half_a_day] = await add_tasks(database, owner, finished_ago=timedelta(hours=12))

    assert await Retention(database, 3).sweep() == Swept(tasks=0, runs=0)
    assert await Retention(database, 1).sweep() == Swept(tasks=1, runs=0)
    assert await task_ids(database) == {half_a_day}
    assert two_days not in await task_ids(database)


async def test_batches_are_bounded_and_oldest_first(database: Database, owner: str) -> None:
    old = await add_tasks(database, owner, 1_200)
    [recent] = await add_tasks(database, owner, finished_ago=RECENT)
    cutoff = utcnow() - timedelta(days=AGE_DAYS)

    async with database.write() as conn:
        assert await retention_store.delete_tasks(conn, cutoff, 500) == 500
    assert await task_ids(database) == {*old[500:], recent}
    async with database.write() as conn:
        assert await retention_store.delete_tasks(conn, cutoff, 500) == 500
    async with database.write() as conn:
        assert await retention_store.delete_tasks(conn, cutoff, 500) == 200
    assert await task_ids(database) == {recent}
    assert await count(database, task_events, task_events.c.task_id != recent) == 0


async def test_one_sweep_goes_batch_after_batch_until_all_are_gone(
    database: Database, owner: str
) -> None:
    old = await add_tasks(database, owner, 1_200)
    [recent] = await add_tasks(database, owner, finished_ago=RECENT)

    swept = await Retention(database, AGE_DAYS, task_batch=500).sweep()

    assert swept == Swept(tasks=len(old), runs=0)
    assert await task_ids(database) == {recent}


async def test_other_writers_get_in_between_batches(database: Database, owner: str) -> None:
    """A sweep is many short transactions, not one long one: a writer that
    keeps writing while it runs sees it part done."""
    old = await add_tasks(database, owner, 1_000)
    sweep = asyncio.create_task(Retention(database, AGE_DAYS, task_batch=100).sweep())
    seen: list[int] = []
    while not sweep.done():
        async with database.write() as conn:
            seen.append(
                int(await conn.scalar(select(func.count()).where(tasks.c.id.in_(old))) or 0)
            )
    assert (await sweep).tasks == 1_000
    assert [n for n in seen if 0 < n < 1_000], seen


# -- runs ----------------------------------------------------------------------


async def test_a_finished_run_goes_with_its_nodes_events_and_tasks(
    database: Database, owner: str
) -> None:
    old_run, old_run_task = await add_run(
        database, owner, status=RunStatus.FAILED, finished_ago=OLD
    )
    running, running_task = await add_run(
        database, owner, status=RunStatus.RUNNING, finished_ago=None
    )
    recent_run, recent_run_task = await add_run(
        database, owner, status=RunStatus.SUCCEEDED, finished_ago=RECENT
    )
    # A task of a run that is gone (deleted with its workflow): on its own.
    [orphan] = await add_tasks(database, owner, run_id=str(uuid.uuid4()))

    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=1, runs=1)

    assert await run_rows(database, old_run, old_run_task) == (0, 0, 0, 0, 0)
    # Their tasks finished long ago, but the runs' nodes name them.
    assert await run_rows(database, running, running_task) == (1, 1, 3, 1, 2)
    assert await run_rows(database, recent_run, recent_run_task) == (1, 1, 3, 1, 2)
    assert orphan not in await task_ids(database)


async def test_run_batches_are_bounded(database: Database, owner: str) -> None:
    for _ in range(5):
        await add_run(database, owner, status=RunStatus.SUCCEEDED, finished_ago=OLD)
    cutoff = utcnow() - timedelta(days=AGE_DAYS)

    async with database.write() as conn:
        assert await retention_store.delete_runs(conn, cutoff, 2) == 2
    assert await count(database, workflow_runs, workflow_runs.c.id.is_not(None)) == 3
    assert await count(database, tasks, tasks.c.id.is_not(None)) == 3
    assert await Retention(database, AGE_DAYS, run_batch=2).sweep() == Swept(tasks=0, runs=3)
    assert await count(database, tasks, tasks.c.id.is_not(None)) == 0


@pytest.mark.skipif(backend() != "postgres", reason="SQLite has one writer: no lock to share")
async def test_one_replica_at_a_time(database: Database, owner: str) -> None:
    """While another replica holds the retention lock, a sweep leaves the
    round to it."""
    await add_tasks(database, owner, 3)
    async with database.write() as other_replica:
        assert await try_lock(other_replica, RETENTION_LOCK)
        assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=0, runs=0)
    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=3, runs=0)


# -- followers and settings ------------------------------------------------------


@pytest.fixture
def engine(database: Database, database_url: str) -> Engine:
    """The engine, its background loops not started."""
    return Engine(database, Settings(DATABASE_URL=database_url), CredentialWatch(database, "test"))


async def test_a_follower_of_a_task_deleted_while_replaying_ends_not_found(
    database: Database, owner: str, engine: Engine
) -> None:
    """The task goes between two reads of its log: the follower is told it
    is gone instead of waiting for ever on events that will never come."""
    [task_id] = await add_tasks(database, owner, events=REPLAY_BATCH + 100)
    follower = engine.tasks.follow(Identity(owner, "member"), task_id, 0, one_execution=False)
    received = [await anext(follower)]

    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=1, runs=0)

    with pytest.raises(NotFound):
        async for event in follower:
            received.append(event)
    # The first read's batch was already in hand; the next read found nothing.
    assert [event.sequence for event in received] == list(range(1, REPLAY_BATCH + 1))


async def test_a_follower_of_a_run_deleted_while_replaying_ends_not_found(
    database: Database, owner: str, engine: Engine
) -> None:
    run_id, _ = await add_run(
        database, owner, status=RunStatus.SUCCEEDED, finished_ago=OLD, events=REPLAY_BATCH + 100
    )
    follower = engine.workflows.follow(Identity(owner, "member"), run_id, 0)
    received = [await anext(follower)]

    assert await Retention(database, AGE_DAYS).sweep() == Swept(tasks=0, runs=1)

    with pytest.raises(NotFound):
        async for event in follower:
            received.append(event)
    assert [event.sequence for event in received] == list(range(1, REPLAY_BATCH + 1))


def running_loops() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


@pytest.mark.parametrize("days", [0, AGE_DAYS])
async def test_retention_runs_unless_zero_days(
    database: Database, database_url: str, days: int
) -> None:
    settings = Settings(DATABASE_URL=database_url, ORCHESTRATOR_RETENTION_DAYS=days)
    engine = Engine(database, settings, CredentialWatch(database, "test"))
    engine.start()
    try:
        assert ("retention" in running_loops()) is (days > 0)
    finally:
        await engine.stop()


def test_zero_days_is_no_age() -> None:
    with pytest.raises(ValueError, match="0 days keeps everything"):
        Retention(Database("sqlite::memory:"), 0)
