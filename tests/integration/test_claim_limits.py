"""Concurrency keys and rate buckets in the claim (store/tasks.py `claim`,
store/limits.py) on the selected backend: which tasks a claim starts, which
it cancels, and when it asks to be woken."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

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


# Far ahead of the wall clock: on PostgreSQL a claim starts no earlier than
# the database's time, so claims at chosen times must not be in its past.
LATER = datetime(2100, 1, 1, tzinfo=UTC)


async def test_a_turn_held_back_by_its_bucket_does_not_fill_a_key(
    database: Database, owner: str
) -> None:
    strategy = ConcurrencyStrategy.CANCEL_NEWEST
    bucket = RateLimit("once-a-second", 1, 1)
    first, *waiting = await queue(
        database, owner, 3, key="k", limit=2, strategy=strategy, bucket=bucket
    )
    outcome = await claim(database, 10, LATER)
    # One runs: the others wait for the bucket, and k has room for one.
    assert ids(outcome.started) == [first]
    assert outcome.cancel == []
    second = await claim(database, 10, LATER + timedelta(seconds=1))
    # Now k is full with the second: the third finds it so.
    assert ids(second.started) == [waiting[0]]
    assert [(t.id, why) for t, why in second.cancel] == [
        (waiting[1], "concurrency key k is at its limit 2")
    ]


async def test_a_turn_cut_off_by_the_free_slots_does_not_fill_a_key(
    database: Database, owner: str
) -> None:
    y = await queue(database, owner, 2, key="y", limit=1)
    plain = await queue(database, owner, 1)
    strategy = ConcurrencyStrategy.CANCEL_NEWEST
    keyed = await queue(database, owner, 2, key="k", limit=1, strategy=strategy)
    # Two slots: the first read finds y full after its first, the read past
    # it finds three that could start, and the two slots go to the oldest.
    outcome = await claim(database, 2)
    assert ids(outcome.started) == [y[0], *plain]
    # k has nothing running: its second did not find it full.
    assert outcome.cancel == []
    assert ids((await claim(database, 10)).started) == keyed[:1]


@postgres_only
async def test_a_task_another_replica_holds_does_not_fill_its_key(
    database: Database, owner: str
) -> None:
    busy = await queue(database, owner, 2, key="busy", limit=1)
    assert ids((await claim(database, 1)).started) == busy[:1]
    strategy = ConcurrencyStrategy.CANCEL_NEWEST
    held, newer = await queue(database, owner, 2, key="k", limit=1, strategy=strategy)
    async with database.write() as other:
        await other.execute(text("SELECT 1 FROM tasks WHERE id = :id FOR UPDATE"), {"id": held})
        # The first read locks (and finds only busy's second); the read past
        # it does not, and finds the held task, which then cannot be locked.
        outcome = await claim(database, 1)
    assert outcome.started == []
    assert outcome.cancel == []
    assert ids((await claim(database, 1)).started) == [held]
    assert [t.id for t, _ in (await claim(database, 10)).cancel] == [newer]


@postgres_only
async def test_cancel_oldest_leaves_a_running_task_another_transaction_holds(
    database: Database, owner: str
) -> None:
    strategy = ConcurrencyStrategy.CANCEL_OLDEST
    old = await queue(database, owner, 2, key="k", limit=2, strategy=strategy)
    assert ids((await claim(database, 10)).started) == old
    new = await queue(database, owner, 1, key="k", limit=2, strategy=strategy)
    async with database.write() as other:
        # A report finishing the oldest holds it (and may wait for its run,
        # which the claiming transaction may hold): the claim must not wait.
        await other.execute(text("SELECT 1 FROM tasks WHERE id = :id FOR UPDATE"), {"id": old[0]})
        outcome = await asyncio.wait_for(claim(database, 10, NOW + timedelta(seconds=1)), 10)
    # No room was made, so the new task does not start, and says a key is full.
    assert outcome.started == []
    assert outcome.cancel == []
    assert outcome.key_full
    outcome = await claim(database, 10, NOW + timedelta(seconds=2))
    assert ids(outcome.started) == new
    assert [(t.id, t.status) for t, _ in outcome.cancel] == [(old[0], TaskStatus.RUNNING)]


async def test_a_late_claim_makes_up_its_buckets_starts_within_the_limit(
    database: Database, owner: str
) -> None:
    bucket = RateLimit("fast", 4, 1)  # one start every 250 ms
    await queue(database, owner, 100, bucket=bucket)
    assert len((await claim(database, 10, LATER)).started) == 1
    # 600 ms later the starts due at 250 and 500 ms have both come: a claim
    # slower than the spacing still keeps the rate (as far as it can
    # without two starts of one period closer than the period allows).
    late = await claim(database, 10, LATER + timedelta(milliseconds=600))
    assert len(late.started) == 2
    assert late.wake_at == LATER + timedelta(milliseconds=1100)
    starts = [LATER] * 1 + [LATER + timedelta(milliseconds=600)] * 2
    # Claims at irregular times: never more than 4 starts within a second.
    at = LATER + timedelta(milliseconds=600)
    for step in range(40):
        at += timedelta(milliseconds=(50, 300, 700, 1300, 20)[step % 5])
        outcome = await claim(database, 10, at)
        starts += [t.started_at for t in outcome.started if t.started_at is not None]
    assert len(starts) > 40
    for index, start in enumerate(starts):
        in_window = sum(1 for other in starts[index:] if other < start + timedelta(seconds=1))
        assert in_window <= 4, (start, starts)


async def test_a_claim_looks_at_a_bounded_number_of_keys(database: Database, owner: str) -> None:
    for index in range(300):
        await queue(database, owner, 1, key=f"k{index}", limit=1)
    while (await claim(database, 300)).started:
        pass
    for index in range(300):
        await queue(database, owner, 1, key=f"k{index}", limit=1)
    plain = await queue(database, owner, 1)
    async with database.write() as conn:
        outcome = await task_store.claim(
            conn,
            slots=[("w1", 10)],
            types=["t"],
            owner_id=None,
            now=NOW,
            lease_expires_at=NOW + timedelta(minutes=1),
        )
        if backend() == "postgres":
            held = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
            )
            assert held is not None and held <= 256
    # It read no further than its 256th key: the task behind waits for a
    # later claim, and the claim says keys were full.
    assert outcome.started == []
    assert outcome.key_full
    assert plain
