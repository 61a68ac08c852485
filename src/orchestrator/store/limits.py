"""Concurrency keys and rate buckets in the claim, and the reads that say
why a task waits on one.

A key's running count is the number of its owner's RUNNING tasks with that
key, read when a claim needs it: a lost worker's task re-queued (or
finished) frees its slot by that very change, once. A bucket is a row of
`rate_buckets`: its next start may not come before `next_at`, and each
start moves `next_at` on by the starting task's spacing (GCRA), so starts
are evenly spaced and no period holds more than the limit.

On PostgreSQL a claim takes a transaction-scoped advisory lock per key and
per bucket before it counts or reads the bucket, and leaves a key or bucket
another replica holds for this round, as SKIP LOCKED leaves a locked task:
no claim waits for another, so no deadlock; the one that holds it claims
for it. Every start of a keyed or bucketed task happens under its lock, so
counts and `next_at` read under the lock are exact. SQLite has one writer.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import ConcurrencyStrategy, Task, TaskStatus
from orchestrator.store import claiming
from orchestrator.store.database import Database
from orchestrator.store.schema import rate_buckets, tasks
from orchestrator.store.types import utcnow

# (owner id, key or bucket name): keys and buckets are per owner.
Owned = tuple[str, str]

# Reads past keys and buckets that cannot start, a chunk at a time: enough
# for a few claims' worth of other keys per statement, bounded per claim.
_CHUNK_MIN = 64
_MAX_CHUNKS = 64

_TRY_LOCKS = text(
    "SELECT k FROM unnest(CAST(:lock_ids AS bigint[])) AS k WHERE pg_try_advisory_xact_lock(k)"
)


@dataclass(frozen=True)
class Claim:
    """What a claim did: the tasks it started, and what the caller must do
    in the same transaction (store/ writes no events): cancel the queued
    tasks whose key was full (CANCEL_NEWEST) and the running ones that make
    room (CANCEL_OLDEST), each with its reason; and wake the dispatcher at
    `wake_at`, when a bucket it skipped allows its next start."""

    started: list[Task]
    cancel: list[tuple[Task, str]] = field(default_factory=list)
    wake_at: datetime | None = None
    # Tasks were left waiting for a full key (or one another replica held).
    key_full: bool = False


def limited(row: Any) -> bool:
    return row.concurrency_key is not None or row.rate_bucket is not None


def full_key_reason(key: str, limit: int) -> str:
    return f"concurrency key {key} is at its limit {limit}"


@dataclass
class Choice:
    """Rows a limited claim takes, in order, what it must cancel, and the
    time they start."""

    started: list[Any]
    cancel_queued: list[tuple[Any, str]]
    cancel_running: list[tuple[Any, str]]
    wake_at: datetime | None
    now: datetime
    key_full: bool


class _Decider:
    """The state of one claim across the chunks it reads."""

    def __init__(self, conn: AsyncConnection, now: datetime) -> None:
        self.conn = conn
        self.now = now
        # None: another replica holds the key or bucket this round.
        self.running: dict[Owned, int | None] = {}
        self.next_at: dict[Owned, datetime | None] = {}
        self.unheld_buckets: set[Owned] = set()
        self.turns: Counter[Owned] = Counter()
        self.bucket_given: set[Owned] = set()
        self.bucket_waiting: set[Owned] = set()
        self.skip_keys: set[str] = set()
        self.skip_buckets: set[str] = set()
        self.eligible: list[tuple[tuple[Any, ...], Any]] = []
        self.cancel_queued: list[tuple[Any, str]] = []

    async def consider(self, rows: Sequence[Any]) -> None:
        keys = {_key(r) for r in rows if r.concurrency_key is not None} - self.running.keys()
        buckets = {_bucket(r) for r in rows if r.rate_bucket is not None}
        buckets -= self.next_at.keys() | self.unheld_buckets
        held_keys, held_buckets = await _hold(self.conn, keys, buckets)
        self.running.update(dict.fromkeys(keys - held_keys))
        self.running.update(await _running(self.conn, held_keys))
        self.unheld_buckets |= buckets - held_buckets
        self.next_at.update(await _next_starts(self.conn, held_buckets))
        for row in rows:
            self._consider(row)

    def _consider(self, row: Any) -> None:
        turn = 1
        if row.concurrency_key is not None:
            key = _key(row)
            running = self.running[key]
            if running is None:
                self.skip_keys.add(_joined(key))
                return
            self.turns[key] += 1
            turn = self.turns[key]
            strategy = ConcurrencyStrategy(row.concurrency_strategy)
            # CANCEL_OLDEST makes room by cancelling running tasks.
            room = row.concurrency_limit
            if strategy is not ConcurrencyStrategy.CANCEL_OLDEST:
                room -= running
            if turn > room:
                self.turns[key] -= 1
                if strategy is ConcurrencyStrategy.CANCEL_NEWEST:
                    reason = full_key_reason(row.concurrency_key, row.concurrency_limit)
                    self.cancel_queued.append((row, reason))
                else:
                    self.skip_keys.add(_joined(key))
                return
        if row.rate_bucket is not None:
            bucket = _bucket(row)
            next_at = self.next_at.get(bucket)
            if bucket in self.unheld_buckets or bucket in self.bucket_given:
                self.skip_buckets.add(_joined(bucket))
                self.bucket_waiting.add(bucket)
                return
            if next_at is not None and next_at > self.now:
                self.skip_buckets.add(_joined(bucket))
                self.bucket_waiting.add(bucket)
                return
            self.bucket_given.add(bucket)
        # Priority first; within it keys take turns (a key's first task,
        # then every key's second…), then age.
        self.eligible.append(((row.dispatch_rank, turn, row.queued_at, row.id), row))

    async def displaced(self, started: Sequence[Any]) -> list[tuple[Any, str]]:
        """The oldest running tasks of each CANCEL_OLDEST key that the
        started ones push past its limit."""
        starting: Counter[Owned] = Counter(_key(r) for r in started if r.concurrency_key)
        limits: dict[Owned, tuple[str, int]] = {
            _key(r): (r.concurrency_key, r.concurrency_limit)
            for r in started
            if r.concurrency_strategy == ConcurrencyStrategy.CANCEL_OLDEST
        }
        cancelled: list[tuple[Any, str]] = []
        for owned, (key, limit) in sorted(limits.items()):
            over = (self.running[owned] or 0) + starting[owned] - limit
            if over > 0:
                reason = f"{full_key_reason(key, limit)}: a newer task takes its place"
                cancelled += [
                    (row, reason) for row in await _oldest_running(self.conn, owned, over)
                ]
        return cancelled

    async def move_buckets(self, started: Sequence[Any], at: datetime) -> datetime | None:
        """Move on the buckets of the tasks started `at`; the first time a
        bucket that made a task wait allows a start."""
        moved: dict[Owned, datetime] = {}
        for row in started:
            if row.rate_bucket is not None:
                bucket = _bucket(row)
                since = max(self.next_at.get(bucket) or at, at)
                spacing = timedelta(seconds=row.rate_period_seconds / row.rate_limit)
                moved[bucket] = since + spacing
        if moved:
            values = [
                {"owner_id": o, "name": n, "next_at": at} for (o, n), at in sorted(moved.items())
            ]
            await self.conn.execute(_upsert_buckets(self.conn), values)
        waits = [
            moved.get(bucket) or self.next_at.get(bucket)
            for bucket in self.bucket_waiting - self.unheld_buckets
        ]
        return min((at for at in waits if at is not None), default=None)


async def choose(
    conn: AsyncConnection,
    first: Sequence[Any],
    parameters: Mapping[str, Any],
    *,
    wanted: int,
    by_owner: bool,
    now: datetime,
) -> Choice:
    """The tasks a claim starts when keys or buckets are among them: those
    whose key has room and whose bucket allows a start, read on past the
    others (`first` is the claim's first read, in dispatch order)."""
    decider = _Decider(conn, now)
    rows, asked, chunk = first, wanted, max(_CHUNK_MIN, 4 * wanted)
    further = claiming.further(conn.dialect.name, by_owner=by_owner)
    for _ in range(_MAX_CHUNKS):
        await decider.consider(rows)
        if len(decider.eligible) >= wanted or len(rows) < asked:
            break
        asked = chunk
        last = rows[-1]
        rows = (
            await conn.execute(
                further,
                {
                    **parameters,
                    "claim_candidates": chunk,
                    "after_rank": last.dispatch_rank,
                    "after_queued": last.queued_at,
                    "after_id": last.id,
                    "skip_keys": sorted(decider.skip_keys),
                    "skip_buckets": sorted(decider.skip_buckets),
                },
            )
        ).all()
    decider.eligible.sort(key=lambda entry: entry[0])
    started = [row for _, row in decider.eligible[:wanted]]
    cancel_queued = decider.cancel_queued
    if conn.dialect.name == "postgresql":
        ids = [row.id for row in started] + [row.id for row, _ in cancel_queued]
        locked = {row.id for row in await conn.execute(claiming.LOCK_CHOSEN, {"chosen_ids": ids})}
        started = [row for row in started if row.id in locked]
        cancel_queued = [(row, why) for row, why in cancel_queued if row.id in locked]
    if conn.dialect.name == "postgresql":
        # The transaction's time was taken before it held its keys; one that
        # freed a slot it counted on may have taken a later time and still
        # committed first. Starting at the time it counted keeps a key's
        # recorded intervals within its limit.
        now = max(now, utcnow())
    cancel_running = await decider.displaced(started)
    wake_at = await decider.move_buckets(started, now)
    key_full = bool(decider.skip_keys)
    return Choice(started, cancel_queued, cancel_running, wake_at, now, key_full)


async def _hold(
    conn: AsyncConnection, keys: Collection[Owned], buckets: Collection[Owned]
) -> tuple[set[Owned], set[Owned]]:
    """The keys and buckets this transaction now holds: all on SQLite; on
    PostgreSQL those whose advisory lock was free (or already ours)."""
    if conn.dialect.name != "postgresql" or not (keys or buckets):
        return set(keys), set(buckets)
    wanted = {lock_id("key", k): ("key", k) for k in keys}
    wanted |= {lock_id("bucket", b): ("bucket", b) for b in buckets}
    taken = [wanted[row.k] for row in await conn.execute(_TRY_LOCKS, {"lock_ids": sorted(wanted)})]
    return {o for kind, o in taken if kind == "key"}, {o for kind, o in taken if kind == "bucket"}


def lock_id(kind: str, owned: Owned) -> int:
    """A key's or bucket's advisory lock: 64 bits of a hash of its name."""
    name = "\x1f".join((kind, *owned)).encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)


# Each key's RUNNING tasks, from ix_tasks_owner_id_concurrency_key_status;
# built once (building it per claim cost as much as running it).
_RUNNING = (
    select(tasks.c.owner_id, tasks.c.concurrency_key, func.count())
    .where(
        tasks.c.status == TaskStatus.RUNNING,
        tuple_(tasks.c.owner_id, tasks.c.concurrency_key).in_(bindparam("keys", expanding=True)),
    )
    .group_by(tasks.c.owner_id, tasks.c.concurrency_key)
)


async def _running(conn: AsyncConnection, keys: Collection[Owned]) -> dict[Owned, int]:
    counts = dict.fromkeys(keys, 0)
    if keys:
        found = await conn.execute(_RUNNING, {"keys": sorted(keys)})
        counts.update({(o, k): n for o, k, n in found})
    return counts


async def _next_starts(
    conn: AsyncConnection, buckets: Collection[Owned]
) -> dict[Owned, datetime | None]:
    """Each bucket's next_at; None for one never used (it allows a start)."""
    found: dict[Owned, datetime | None] = dict.fromkeys(buckets)
    if buckets:
        pair = tuple_(rate_buckets.c.owner_id, rate_buckets.c.name)
        query = select(rate_buckets).where(pair.in_(sorted(buckets)))
        found.update({(r.owner_id, r.name): r.next_at for r in await conn.execute(query)})
    return found


async def _oldest_running(conn: AsyncConnection, key: Owned, count: int) -> list[Any]:
    query = (
        select(tasks)
        .where(
            tasks.c.owner_id == key[0],
            tasks.c.concurrency_key == key[1],
            tasks.c.status == TaskStatus.RUNNING,
        )
        .order_by(tasks.c.started_at, tasks.c.queued_at, tasks.c.id)
        .limit(count)
    )
    return list((await conn.execute(query)).all())


def _upsert_buckets(conn: AsyncConnection) -> Any:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(rate_buckets)
    return statement.on_conflict_do_update(
        index_elements=[rate_buckets.c.owner_id, rate_buckets.c.name],
        set_={"next_at": statement.excluded.next_at},
    )


def _key(row: Any) -> Owned:
    return (row.owner_id, row.concurrency_key)


def _bucket(row: Any) -> Owned:
    return (row.owner_id, row.rate_bucket)


def _joined(owned: Owned) -> str:
    return claiming.SEPARATOR.join(owned)


# -- why a task waits ---------------------------------------------------------


def shared(database: Database) -> bool:
    """Whether other replicas may claim from this database (their workers
    are not known here)."""
    return database.dialect == "postgresql"


async def running_with_key(conn: AsyncConnection, owner_id: str, key: str) -> int:
    return (await _running(conn, [(owner_id, key)]))[(owner_id, key)]


async def bucket_next_at(conn: AsyncConnection, owner_id: str, bucket: str) -> datetime | None:
    return (await _next_starts(conn, [(owner_id, bucket)]))[(owner_id, bucket)]
