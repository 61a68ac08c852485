"""Concurrency keys and rate buckets in the claim (store/tasks.py `claim`,
store/limits.py) on the selected backend: which tasks a claim starts, which
it cancels, and when it asks to be woken."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.model import (
    Concurrency,
    ConcurrencyStrategy,
    NewTask,
    RateLimit,
    Task,
    TaskStatus,
)
from orchestrator.store import Database
from orchestrator.store import tasks as task_store
from orchestrator.store import users as user_store
from orchestrator.store.limits import Claim
from tests.support.database import backend

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=1)
postgres_only = pytest.mark.skipif(backend() != "postgres", reason="locks between replicas")


@pytest.fixture
async def owner(database: Database) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, "owner", "unused-hash", "member")).id


@pytest.fixture
async def other_owner(database: Database) -> str:
    async with database.write() as conn:
        return (await user_store.create(conn, "other", "unused-hash", "member")).id


async def queue(
    database: Database,
    owner_id: str,
    count: int,
    *,
    key: str | None = None,
    limit: int = 2,
    strategy: ConcurrencyStrategy = ConcurrencyStrategy.QUEUE,
    bucket: RateLimit | None = None,
) -> list[str]:
    """`count` queued tasks of type "t", each a microsecond after the last
    one queued by this test."""
    concurrency = Concurrency(key, limit, strategy) if key else None
    made: list[Task] = []
    async with database.write() as conn:
        for _ in range(count):
            new = NewTask(
                title="t",
                type="t",
                input={},
                start=True,
                concurrency=concurrency,
                rate_limit=bucket,
            )
            at = T0 + timedelta(microseconds=next(_clock))
            made += await task_store.insert_many(conn, [task_store.NewRow(owner_id, new)], at)
    return [t.id for t in made]


_clock = iter(range(10**9))


async def claim(database: Database, slots: int, now: datetime = NOW) -> Claim:
    async with database.write() as conn:
        return await task_store.claim(
            conn,
            slots=[("w1", slots)],
            types=["t"],
            owner_id=None,
            now=now,
            lease_expires_at=now + timedelta(minutes=1),
        )


def ids(tasks: Sequence[Task]) -> list[str]:
    return [t.id for t in tasks]


async def test_full_keys_are_looked_past_and_keys_take_turns(
    database: Database, owner: str
) -> None:
    a = await queue(database, owner, 20, key="a")
    b = await queue(database, owner, 20, key="b")
    c = await queue(database, owner, 20, key="c")
    first = await claim(database, 10)
    # Each key's first task, then each key's second: never a third.
    assert ids(first.started) == [a[0], b[0], c[0], a[1], b[1], c[1]]
    assert (await claim(database, 10)).started == []


async def test_unkeyed_tasks_behind_a_full_keys_backlog_start(
    database: Database, owner: str
) -> None:
    keyed = await queue(database, owner, 300, key="busy", limit=1)
    plain = await queue(database, owner, 3)
    assert ids((await claim(database, 10)).started) == [keyed[0], *plain]


async def test_a_key_counts_only_its_owners_tasks(
    database: Database, owner: str, other_owner: str
) -> None:
    mine = await queue(database, owner, 2, key="k", limit=1)
    theirs = await queue(database, other_owner, 2, key="k", limit=1)
    assert ids((await claim(database, 10)).started) == [mine[0], theirs[0]]
    assert (await claim(database, 10)).started == []


async def test_a_started_task_counts_until_it_leaves_running(
    database: Database, owner: str
) -> None:
    first, second = await queue(database, owner, 2, key="k", limit=1)
    started = (await claim(database, 10)).started
    assert ids(started) == [first]
    async with database.write() as conn:
        # Given back (its worker lost): the slot is free once, by the change.
        await task_store.change(
            conn, first, {"status": TaskStatus.QUEUED, "worker_id": None, "available_at": NOW}
        )
    assert ids((await claim(database, 10)).started) == [first]
    assert (await claim(database, 10)).started == []
    async with database.write() as conn:
        await task_store.change(conn, first, {"status": TaskStatus.SUCCEEDED})
    assert ids((await claim(database, 10)).started) == [second]


async def test_cancel_newest_cancels_what_finds_its_key_full(
    database: Database, owner: str
) -> None:
    first, *rest = await queue(
        database, owner, 3, key="k", limit=1, strategy=ConcurrencyStrategy.CANCEL_NEWEST
    )
    outcome = await claim(database, 10)
    assert ids(outcome.started) == [first]
    assert [(t.id, why) for t, why in outcome.cancel] == [
        (task_id, "concurrency key k is at its limit 1") for task_id in rest
    ]


async def test_cancel_oldest_cancels_the_oldest_running(database: Database, owner: str) -> None:
    strategy = ConcurrencyStrategy.CANCEL_OLDEST
    old = await queue(database, owner, 2, key="k", limit=2, strategy=strategy)
    assert ids((await claim(database, 10)).started) == old
    new = await queue(database, owner, 1, key="k", limit=2, strategy=strategy)
    outcome = await claim(database, 10, NOW + timedelta(seconds=1))
    assert ids(outcome.started) == new
    assert [t.id for t, _ in outcome.cancel] == [old[0]]
    assert outcome.cancel[0][0].status is TaskStatus.RUNNING


async def test_a_bucket_spaces_starts_and_asks_to_be_woken(database: Database, owner: str) -> None:
    bucket = RateLimit("api", 2, 1)  # one start per half second
    limited = await queue(database, owner, 3, bucket=bucket)
    plain = await queue(database, owner, 1)
    first = await claim(database, 10)
    # Tasks waiting for the bucket do not hold up those behind them.
    assert ids(first.started) == [limited[0], *plain]
    started_at = first.started[0].started_at
    assert started_at is not None
    assert first.wake_at == started_at + timedelta(seconds=0.5)
    early = await claim(database, 10, started_at + timedelta(seconds=0.4))
    assert early.started == []
    assert early.wake_at == started_at + timedelta(seconds=0.5)
    on_time = await claim(database, 10, started_at + timedelta(seconds=0.5))
    assert ids(on_time.started) == [limited[1]]
    next_started = on_time.started[0].started_at
    assert next_started is not None
    assert on_time.wake_at == next_started + timedelta(seconds=0.5)


@postgres_only
async def test_replicas_claiming_one_key_at_once_never_exceed_its_limit(
    database: Database, owner: str
) -> None:
    keyed = await queue(database, owner, 6, key="k", limit=2)
    plain = await queue(database, owner, 2)
    async with database.write() as first:
        taken_first = await task_store.claim(
            first,
            slots=[("w1", 10)],
            types=["t"],
            owner_id=None,
            now=NOW,
            lease_expires_at=NOW + timedelta(minutes=1),
        )
        # The second replica claims while the first holds the key: it leaves
        # the key to it (no wait, no double count) and takes what else there is.
        async with database.write() as second:
            taken_second = await task_store.claim(
                second,
                slots=[("w2", 10)],
                types=["t"],
                owner_id=None,
                now=NOW,
                lease_expires_at=NOW + timedelta(minutes=1),
            )
    # Keys take turns with unkeyed tasks: a key's second task comes after them.
    assert ids(taken_first.started) == [keyed[0], *plain, keyed[1]]
    assert taken_second.started == []
    assert (await claim(database, 10)).started == []
