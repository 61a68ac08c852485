"""The dashboard's reads on the selected backend: the overview (counts,
tasks finished per minute, failures, queues), title search, a task's
history and a caller's runs, each scoped to its owner like the services.

Tasks are created by the engine; where a test needs them finished or
running at a given time, their row is then moved there by an UPDATE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from orchestrator.auth.identity import Identity
from orchestrator.config import Settings
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.overview import MINUTES, OverviewReader, QueueRow
from orchestrator.engine.runtime import Engine
from orchestrator.engine.tasks import TaskFilter
from orchestrator.errors import InvalidArgument, NotFound
from orchestrator.model import (
    Definition,
    NewTask,
    NodeSpec,
    TaskEvent,
    TaskEventType,
    TaskStatus,
)
from orchestrator.store import Database
from orchestrator.store import events as event_store
from orchestrator.store import users as user_store
from orchestrator.store.schema import tasks
from orchestrator.store.types import utcnow

MINUTE = timedelta(minutes=1)


@pytest.fixture
def engine(database: Database, database_url: str) -> Engine:
    """The engine, its background loops not started (nothing claims)."""
    return Engine(database, Settings(DATABASE_URL=database_url), CredentialWatch(database, "test"))


@pytest.fixture
def reader(database: Database) -> OverviewReader:
    return OverviewReader(database)


async def user(database: Database, name: str, role: str = "member") -> Identity:
    async with database.write() as conn:
        return Identity((await user_store.create(conn, name, "hash-1", role)).id, role)


@pytest.fixture
async def alice(database: Database) -> Identity:
    return await user(database, "alice")


@pytest.fixture
async def bob(database: Database) -> Identity:
    return await user(database, "bob")


@pytest.fixture
async def admin(database: Database) -> Identity:
    return await user(database, "root", "admin")


async def add(
    engine: Engine,
    who: Identity,
    title: str = "t",
    type: str = "echo",
    *,
    start: bool = True,
    not_before: datetime | None = None,
) -> str:
    new = NewTask(title, type, {}, start=start, not_before=not_before)
    return (await engine.tasks.create(who, new)).id


async def move(database: Database, task_id: str, **values: object) -> None:
    async with database.write() as conn:
        await conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))


async def finish(database: Database, task_id: str, status: TaskStatus, at: datetime) -> None:
    await move(database, task_id, status=status, finished_at=at)


def zeros(**counts: int) -> dict[TaskStatus, int]:
    return {status: counts.get(status.value, 0) for status in TaskStatus}


# -- counts ----------------------------------------------------------------------


async def test_counts_by_status_are_the_callers_own(
    database: Database,
    engine: Engine,
    reader: OverviewReader,
    alice: Identity,
    bob: Identity,
    admin: Identity,
) -> None:
    done = await add(engine, alice)
    await finish(database, done, TaskStatus.SUCCEEDED, utcnow())
    await add(engine, alice)
    await add(engine, alice, start=False)
    await add(engine, bob)
    await add(engine, bob)

    assert await reader.counts(alice) == zeros(PENDING=1, QUEUED=1, SUCCEEDED=1)
    assert await reader.counts(bob) == zeros(QUEUED=2)
    assert await reader.counts(admin) == zeros(PENDING=1, QUEUED=3, SUCCEEDED=1)


async def test_counts_of_a_caller_without_tasks_are_all_zero(
    reader: OverviewReader, alice: Identity
) -> None:
    assert await reader.counts(alice) == zeros()


# -- finished per minute ---------------------------------------------------------


async def test_finished_per_minute_counts_the_hour_of_clock_minutes_to_nows(
    database: Database,
    engine: Engine,
    reader: OverviewReader,
    alice: Identity,
    bob: Identity,
    admin: Identity,
) -> None:
    """`now` late in its minute: the 60 minutes end with its own, so 59.9
    minutes ago is in the first and 60.1 minutes ago before it."""
    minute = utcnow().replace(second=0, microsecond=0) - 2 * MINUTE
    now = minute + timedelta(seconds=59.9)
    first = minute - (MINUTES - 1) * MINUTE
    finished = [
        (alice, TaskStatus.SUCCEEDED, now - timedelta(minutes=59.9)),  # first minute
        (alice, TaskStatus.FAILED, first),  # first minute, its first instant
        (alice, TaskStatus.SUCCEEDED, now - timedelta(minutes=60.1)),  # before
        (alice, TaskStatus.CANCELLED, first - timedelta(microseconds=1)),  # before
        (alice, TaskStatus.FAILED, first + 30 * MINUTE - timedelta(milliseconds=1)),  # 30th
        (alice, TaskStatus.CANCELLED, first + 30 * MINUTE),  # 31st
        (alice, TaskStatus.SUCCEEDED, now - timedelta(seconds=0.5)),  # last minute
        (alice, TaskStatus.SUCCEEDED, now + timedelta(seconds=0.09)),  # last, after now
        (alice, TaskStatus.SUCCEEDED, minute + MINUTE),  # the minute after
        (bob, TaskStatus.FAILED, first + 10 * MINUTE),  # 11th
    ]
    for who, status, at in finished:
        await finish(database, await add(engine, who), status, at)
    # Neither finished nor counted: queued, running.
    await add(engine, alice)
    await move(database, await add(engine, alice), status=TaskStatus.RUNNING)

    mine = await reader.finished_per_minute(alice, now)

    assert [at for at, _, _ in mine] == [first + i * MINUTE for i in range(MINUTES)]
    assert all(at.tzinfo == UTC for at, _, _ in mine)
    expected = [(0, 0)] * MINUTES
    expected[0] = (1, 1)
    expected[29] = (0, 1)
    expected[30] = (0, 1)
    expected[59] = (2, 0)
    assert [(ok, bad) for _, ok, bad in mine] == expected

    theirs = await reader.finished_per_minute(bob, now)
    assert [(i, ok, bad) for i, (_, ok, bad) in enumerate(theirs) if ok or bad] == [(10, 0, 1)]

    everyone = await reader.finished_per_minute(admin, now)
    expected[10] = (0, 1)
    assert [(ok, bad) for _, ok, bad in everyone] == expected


async def test_finished_per_minute_at_the_start_of_a_minute(
    database: Database, engine: Engine, reader: OverviewReader, alice: Identity
) -> None:
    """`now` in another time zone is the same instant; its minute, just
    begun, is the last and holds what finished at its first instant."""
    now = utcnow().replace(second=0, microsecond=0)
    await finish(database, await add(engine, alice), TaskStatus.SUCCEEDED, now)
    await finish(database, await add(engine, alice), TaskStatus.FAILED, now - MINUTE)

    found = await reader.finished_per_minute(
        alice, now.astimezone(timezone(-timedelta(hours=5, minutes=30)))
    )

    assert len(found) == MINUTES
    assert found[-1] == (now, 1, 0)
    assert found[-2] == (now - MINUTE, 0, 1)
    assert sum(ok + bad for _, ok, bad in found) == 2


async def test_finished_per_minute_reads_settled_minutes_once(
    database: Database, engine: Engine, reader: OverviewReader, alice: Identity
) -> None:
    """Redrawn every second, the chart reads again only the minutes still
    moving: a minute settled (over SETTLED past its end) keeps its count,
    and the minute just ended and the current one are read each time."""
    now = utcnow().replace(second=0, microsecond=0) + timedelta(seconds=5)
    settled, ended, current = now - 3 * MINUTE, now - MINUTE, now
    for at in (settled, ended, current):
        await finish(database, await add(engine, alice), TaskStatus.SUCCEEDED, at)
    first = await reader.finished_per_minute(alice, now)
    assert [ok for _, ok, _ in first[-4:]] == [1, 0, 1, 1]

    for at in (settled, ended, current):
        await finish(database, await add(engine, alice), TaskStatus.FAILED, at)
    again = await reader.finished_per_minute(alice, now)

    # 5 s into the minute: the one before ended 5 s ago, not yet settled.
    assert [(ok, bad) for _, ok, bad in again[-4:]] == [(1, 0), (0, 0), (1, 1), (1, 1)]
    # Only the kept count held the settled minute back: a new reader sees all three.
    assert (
        sum(bad for _, _, bad in await OverviewReader(database).finished_per_minute(alice, now))
        == 3
    )


# -- recent failures -------------------------------------------------------------


async def test_recent_failures_latest_first_and_own(
    database: Database,
    engine: Engine,
    reader: OverviewReader,
    alice: Identity,
    bob: Identity,
    admin: Identity,
) -> None:
    now = utcnow()
    failed = []
    for minutes_ago in (30, 10, 20):
        task_id = await add(engine, alice, f"failed {minutes_ago} min ago")
        await finish(database, task_id, TaskStatus.FAILED, now - timedelta(minutes=minutes_ago))
        failed.append(task_id)
    cancelled = await add(engine, alice)
    await finish(database, cancelled, TaskStatus.CANCELLED, now)
    theirs = await add(engine, bob)
    await finish(database, theirs, TaskStatus.FAILED, now - timedelta(minutes=1))

    mine = await reader.recent_failures(alice, limit=2)
    assert [t.id for t in mine] == [failed[1], failed[2]]
    assert [t.status for t in mine] == [TaskStatus.FAILED] * 2
    assert [t.id for t in await reader.recent_failures(alice)] == [failed[1], failed[2], failed[0]]
    assert [t.id for t in await reader.recent_failures(bob)] == [theirs]
    everyone = await reader.recent_failures(admin)
    assert [t.id for t in everyone] == [theirs, failed[1], failed[2], failed[0]]


# -- queues ----------------------------------------------------------------------


async def test_queue_rows_by_type_are_the_callers_own(
    database: Database,
    engine: Engine,
    reader: OverviewReader,
    alice: Identity,
    bob: Identity,
    admin: Identity,
) -> None:
    oldest = await add(engine, alice, type="echo")
    await add(engine, alice, type="echo", not_before=utcnow() + timedelta(hours=1))
    await add(engine, alice, type="sleep")
    await move(database, await add(engine, alice, type="sleep"), status=TaskStatus.RUNNING)
    await move(database, await add(engine, alice, type="fail"), status=TaskStatus.RUNNING)
    await add(engine, alice, type="never-started", start=False)
    for _ in range(3):
        await add(engine, bob, type="echo")
    await add(engine, bob, type="bobs-own")
    queued_at = utcnow() - timedelta(seconds=120)
    await move(database, oldest, queued_at=queued_at)

    rows = await reader.queue(alice)
    read_by = utcnow()

    assert [r.type for r in rows] == ["echo", "fail", "sleep"]
    echo, fail, sleep = rows
    assert (echo.queued, echo.not_due, echo.running) == (2, 1, 0)
    assert echo.oldest_waiting_seconds is not None
    assert 120 <= echo.oldest_waiting_seconds <= (read_by - queued_at).total_seconds()
    assert fail == QueueRow("fail", 0, 0, None, 1)
    assert (sleep.queued, sleep.not_due, sleep.running) == (1, 0, 1)
    assert sleep.oldest_waiting_seconds is not None
    assert 0 <= sleep.oldest_waiting_seconds < 60

    theirs = await reader.queue(bob)
    assert [(r.type, r.queued, r.running) for r in theirs] == [("bobs-own", 1, 0), ("echo", 3, 0)]
    assert all(
        r.oldest_waiting_seconds is not None and r.oldest_waiting_seconds < 60 for r in theirs
    )

    everyone = await reader.queue(admin)
    assert [(r.type, r.queued, r.not_due, r.running) for r in everyone] == [
        ("bobs-own", 1, 0, 0),
        ("echo", 5, 1, 0),
        ("fail", 0, 0, 1),
        ("sleep", 1, 0, 1),
    ]
    assert everyone[1].oldest_waiting_seconds is not None
    assert everyone[1].oldest_waiting_seconds >= 120


async def test_no_queue_without_queued_or_running_tasks(
    database: Database, engine: Engine, reader: OverviewReader, alice: Identity
) -> None:
    await add(engine, alice, start=False)
    await finish(database, await add(engine, alice), TaskStatus.SUCCEEDED, utcnow())
    assert await reader.queue(alice) == []


# -- title search ----------------------------------------------------------------

TITLES = (
    "100% done",
    "100 percent",
    "a_b",
    "axb",
    "Mixed CASE Title",
    "back\\slash",
    "backslash",
    "École",
)


async def titles_found(engine: Engine, who: Identity, text: str, page_size: int = 0) -> list[str]:
    """The titles a search finds, following every page, oldest first."""
    found, token = [], ""
    while True:
        page, token = await engine.tasks.list(
            who, TaskFilter(title_contains=text), page_size, token
        )
        found += [task.title for task in page]
        if not token:
            return found[::-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100%", ["100% done"]),
        ("%", ["100% done"]),
        ("0 ", ["100 percent"]),
        ("_", ["a_b"]),
        ("a_b", ["a_b"]),
        ("mIXED case", ["Mixed CASE Title"]),
        ("CASE T", ["Mixed CASE Title"]),
        ("\\", ["back\\slash"]),
        ("K\\S", ["back\\slash"]),
        ("backslash", ["backslash"]),
        ("%d", []),
        # Only ASCII letters fold, the same on either database whatever
        # its locale: "ÉCOLE" finds "École", "école" does not.
        ("ÉCOLE", ["École"]),
        ("école", []),
        ("", list(TITLES)),
    ],
)
async def test_title_search_matches_text_literally_ignoring_case(
    engine: Engine, alice: Identity, text: str, expected: list[str]
) -> None:
    for title in TITLES:
        await add(engine, alice, title)
    assert await titles_found(engine, alice, text) == expected


async def test_title_search_is_owner_scoped_and_paged(
    engine: Engine, alice: Identity, bob: Identity, admin: Identity
) -> None:
    for i in range(3):
        await add(engine, alice, f"report {i}")
    await add(engine, alice, "other")
    await add(engine, bob, "REPORT of bob")

    assert await titles_found(engine, alice, "report", page_size=1) == [
        "report 0",
        "report 1",
        "report 2",
    ]
    assert await titles_found(engine, bob, "report") == ["REPORT of bob"]
    assert len(await titles_found(engine, admin, "Report", page_size=2)) == 4
    queued, _ = await engine.tasks.list(
        alice, TaskFilter(status=TaskStatus.PENDING, title_contains="report"), 0, ""
    )
    assert queued == []


async def test_title_search_refuses_nul(engine: Engine, alice: Identity) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await engine.tasks.list(alice, TaskFilter(title_contains="a\x00b"), 0, "")
    assert [v.field for v in refused.value.violations] == ["title_contains"]


# -- history ---------------------------------------------------------------------


async def test_history_is_the_last_events_in_order(
    engine: Engine, alice: Identity, admin: Identity
) -> None:
    task_id = await add(engine, alice)
    for i in range(5):
        await engine.tasks.update(alice, task_id, {"title": f"title {i}"})
    await engine.tasks.cancel(alice, task_id, "enough")

    events = await engine.tasks.history(alice, task_id)
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.type for e in events] == [
        TaskEventType.QUEUED,
        *[TaskEventType.UPDATED] * 5,
        TaskEventType.CANCELLED,
    ]
    assert {e.task_id for e in events} == {task_id}
    assert (events[-1].status, events[-1].message) == (TaskStatus.CANCELLED, "enough")

    last = await engine.tasks.history(alice, task_id, limit=3)
    assert [e.sequence for e in last] == [5, 6, 7]
    assert last == events[-3:]
    assert await engine.tasks.history(admin, task_id, limit=1) == events[-1:]


async def test_history_of_another_users_task_is_not_found(
    engine: Engine, alice: Identity, bob: Identity
) -> None:
    task_id = await add(engine, alice)
    with pytest.raises(NotFound, match=task_id):
        await engine.tasks.history(bob, task_id)
    with pytest.raises(NotFound):
        await engine.tasks.history(alice, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidArgument):
        await engine.tasks.history(alice, task_id, limit=0)


async def test_history_of_some_types_reads_past_any_number_of_the_others(
    engine: Engine, database: Database, alice: Identity, bob: Identity
) -> None:
    """A task that logged 300 lines between two attempts: its last events of
    the types asked for, whatever came between them."""
    task_id = await add(engine, alice)  # its event 1: QUEUED
    kinds = [
        TaskEventType.STARTED,
        *[TaskEventType.LOG, TaskEventType.LOG, TaskEventType.PROGRESS] * 100,
        TaskEventType.RETRYING,
        TaskEventType.STARTED,
        *[TaskEventType.LOG] * 300,
        TaskEventType.SUCCEEDED,
    ]
    now = utcnow()
    async with database.write() as conn:
        await event_store.append(
            conn,
            [
                TaskEvent(task_id, sequence, kind, TaskStatus.RUNNING, now, message=f"{sequence}")
                for sequence, kind in enumerate(kinds, start=2)
            ],
        )
    await move(database, task_id, last_sequence=len(kinds) + 1)
    timeline = set(TaskEventType) - {TaskEventType.LOG, TaskEventType.PROGRESS}

    events = await engine.tasks.history(alice, task_id, 10, types=timeline)
    assert [(e.sequence, e.type) for e in events] == [
        (1, TaskEventType.QUEUED),
        (2, TaskEventType.STARTED),
        (303, TaskEventType.RETRYING),
        (304, TaskEventType.STARTED),
        (605, TaskEventType.SUCCEEDED),
    ]
    assert [e.message for e in events[1:]] == ["2", "303", "304", "605"]
    newest = await engine.tasks.history(alice, task_id, 2, types=timeline)
    assert [e.sequence for e in newest] == [304, 605]
    logs = await engine.tasks.history(alice, task_id, 3, types={TaskEventType.LOG})
    assert [(e.sequence, e.type) for e in logs] == [(s, TaskEventType.LOG) for s in (602, 603, 604)]
    progress = await engine.tasks.history(alice, task_id, 500, types=[TaskEventType.PROGRESS])
    assert [e.sequence for e in progress] == list(range(5, 303, 3))
    # Without types, every type: the log lines push the rest out.
    assert [e.sequence for e in await engine.tasks.history(alice, task_id, 3)] == [603, 604, 605]

    with pytest.raises(NotFound):
        await engine.tasks.history(bob, task_id, 10, types=timeline)
    with pytest.raises(InvalidArgument) as refused:
        await engine.tasks.history(alice, task_id, 10, types=())
    assert [v.field for v in refused.value.violations] == ["types"]


# -- runs ------------------------------------------------------------------------


async def test_runs_of_every_workflow_are_listed_for_their_owner(
    engine: Engine, alice: Identity, bob: Identity, admin: Identity
) -> None:
    definition = Definition(nodes=(NodeSpec("a", "echo"),), edges=())
    started: dict[str, list[str]] = {alice.user_id: [], bob.user_id: []}
    for who, name in ((alice, "one"), (alice, "two"), (bob, "three")):
        workflow = await engine.workflows.create(who, name, "", definition)
        run = await engine.workflows.start(who, workflow.id, 0, {})
        started[who.user_id].append(run.id)

    async def listed(who: Identity) -> set[str]:
        runs, _ = await engine.workflows.list_runs(who, None, None, 0, "")
        return {run.id for run in runs}

    assert await listed(alice) == set(started[alice.user_id])
    assert await listed(bob) == set(started[bob.user_id])
    assert await listed(admin) == {*started[alice.user_id], *started[bob.user_id]}
