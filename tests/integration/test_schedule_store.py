"""The fire loop's queries (store/schedules.py) on the selected backend:
due schedules read page by page while fires move them on, disabled owners
left out, buffered times offered only once the last fire has ended, and
fired times recorded until their schedule goes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from orchestrator.engine.retention import Retention, Swept
from orchestrator.model import NewTask, Schedule, ScheduleSpec, TaskStatus
from orchestrator.store import Database
from orchestrator.store import schedules as schedule_store
from orchestrator.store import tasks as task_store
from orchestrator.store import users as user_store
from orchestrator.store.schema import schedule_fires, tasks, users

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)
SECOND = timedelta(seconds=1)
TEMPLATE = NewTask("t", "t", {}, start=True)


async def _owner(database: Database, name: str) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, name, "unused-hash", "member")).id


async def _schedule(database: Database, owner_id: str, due: datetime, **state: object) -> str:
    schedule = Schedule(
        id=str(uuid.uuid4()),
        owner_id=owner_id,
        spec=ScheduleSpec(
            name=str(uuid.uuid4()),
            cron="",
            interval_seconds=1,
            time_zone="",
            task=TEMPLATE,
            workflow_id=None,
            input={},
        ),
        paused=False,
        note="",
        created_at=NOW - timedelta(days=1),
        updated_at=NOW - timedelta(days=1),
        next_fire_at=due,
    )
    async with database.write() as conn:
        assert await schedule_store.insert(conn, schedule, due)
        if state:
            await schedule_store.set_state(conn, schedule.id, **state)
    return schedule.id


async def test_pages_read_while_fires_move_schedules_on_leave_none_out(
    database: Database,
) -> None:
    owner = await _owner(database, "owner")
    made = {await _schedule(database, owner, NOW - SECOND * k) for k in range(7)}
    seen: list[str] = []
    after: tuple[datetime, str] | None = None
    while True:
        async with database.read() as conn:
            page = await schedule_store.candidates(conn, NOW, after, 2)
        for candidate in page:
            seen.append(candidate.id)
            async with database.write() as conn:  # fired: due again later
                await schedule_store.set_state(conn, candidate.id, due_at=NOW + SECOND * 10)
        if len(page) < 2:
            break
        after = (page[-1].due_at, page[-1].id)
    assert sorted(seen) == sorted(made)


async def test_a_disabled_owners_schedules_are_not_due(database: Database) -> None:
    owner = await _owner(database, "owner")
    schedule_id = await _schedule(database, owner, NOW - SECOND)
    async with database.write() as conn:
        await conn.execute(update(users).where(users.c.id == owner).values(disabled=True))
    async with database.write() as conn:
        assert await schedule_store.candidates(conn, NOW, None, 10) == []
        assert await schedule_store.lock_due(conn, schedule_id) is None
    async with database.write() as conn:
        await conn.execute(update(users).where(users.c.id == owner).values(disabled=False))
        assert [c.id for c in await schedule_store.candidates(conn, NOW, None, 10)] == [schedule_id]
        locked = await schedule_store.lock_due(conn, schedule_id)
        assert locked is not None and locked.id == schedule_id


async def test_a_buffered_time_is_offered_once_the_last_fire_has_ended(
    database: Database,
) -> None:
    owner = await _owner(database, "owner")
    async with database.write() as conn:
        (task,) = await task_store.insert_many(conn, [task_store.NewRow(owner, TEMPLATE)], NOW)
    later = NOW + timedelta(hours=1)
    schedule_id = await _schedule(
        database, owner, later, buffered_at=NOW - SECOND, last_task_id=task.id
    )
    quiet = await _schedule(database, owner, later)  # nothing buffered
    async with database.read() as conn:
        assert await schedule_store.buffered_ready(conn, 10) == []  # its task is queued
    async with database.write() as conn:
        done = update(tasks).where(tasks.c.id == task.id)
        await conn.execute(done.values(status=TaskStatus.SUCCEEDED.value))
    async with database.read() as conn:
        assert await schedule_store.buffered_ready(conn, 10) == [schedule_id]
    async with database.write() as conn:  # a deleted task has ended too
        await conn.execute(tasks.delete().where(tasks.c.id == task.id))
    async with database.read() as conn:
        assert await schedule_store.buffered_ready(conn, 10) == [schedule_id]
        assert quiet not in await schedule_store.buffered_ready(conn, 10)


async def test_fired_times_outlive_their_tasks_and_go_with_their_schedule(
    database: Database,
) -> None:
    owner = await _owner(database, "owner")
    schedule_id = await _schedule(database, owner, NOW)
    times = [NOW - SECOND * k for k in range(3)]
    async with database.write() as conn:
        for time in times[:2]:
            await schedule_store.record_fire(conn, schedule_id, time)
    async with database.read() as conn:
        assert await schedule_store.fired_times(conn, schedule_id, times) == set(times[:2])
    async with database.write() as conn:
        await schedule_store.remove(conn, schedule_id)
    async with database.read() as conn:
        left = await conn.execute(
            select(schedule_fires).where(schedule_fires.c.schedule_id == schedule_id)
        )
        assert left.all() == []


async def test_retention_forgets_fires_older_than_its_age(database: Database) -> None:
    """Records of fires are kept as long as tasks: an every-second schedule
    would otherwise add 86,400 rows a day for ever."""
    owner = await _owner(database, "retention")
    schedule_id = await _schedule(database, owner, datetime.now(UTC) + timedelta(hours=1))
    now = datetime.now(UTC)
    old = [now - timedelta(days=40, seconds=k) for k in range(3)]
    recent = [now - timedelta(days=1, seconds=k) for k in range(2)]
    async with database.write() as conn:
        for time in old + recent:
            await schedule_store.record_fire(conn, schedule_id, time)

    assert await Retention(database, 30).sweep() == Swept(tasks=0, runs=0, fires=3)

    async with database.read() as conn:
        kept = set(await conn.scalars(select(schedule_fires.c.scheduled_at)))
    assert kept == set(recent)
