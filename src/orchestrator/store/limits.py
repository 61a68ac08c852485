"""Concurrency keys and rate buckets in the claim, and the reads that say
why a task waits on one.

A key's running count is the number of its owner's RUNNING tasks with that
key, read when a claim needs it: a lost worker's task re-queued (or
finished) frees its slot by that very change, once. A bucket is a row of
`rate_buckets`: its next start may not come before `next_at`, and each
start moves `next_at` on by the starting task's spacing, so starts are
evenly spaced. A claim that comes late (after `next_at`) may start together
the starts whose times have passed, up to the limit, and moves `next_at`
on from its own start time by each one's spacing: a bucket keeps its rate
even when each claim takes longer than its spacing, and since starts made
together count from the time they are made, no window of one period holds
more than the limit.

On PostgreSQL a claim takes a transaction-scoped advisory lock per key and
per bucket before it counts or reads the bucket, and leaves a key or bucket
another replica holds for this round, as SKIP LOCKED leaves a locked task;
the one that holds it claims for it. Every start of a keyed or bucketed
task happens under its lock, so counts and `next_at` read under the lock
are exact. The tasks it starts or cancels are locked with SKIP LOCKED too
(a running task that CANCEL_OLDEST would displace included: one another
transaction holds is left alone, and the task that would take its place
waits), so a claim never waits for a key, a bucket or a task row, and
cannot deadlock with a report that holds a task and waits for its run.
SQLite has one writer.
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
# Keys and buckets one claim looks at, at most: on PostgreSQL each is an
# advisory lock held until the commit, from a shared table of locks that
# thousands of distinct keys in one claim would exhaust. Tasks past them
# wait for a later claim.
_MAX_HELD = 256

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
        # Eligible rows per key so far (a row's turn), and per bucket the
        # starts given and the time the next one is due.
        self.turns: Counter[Owned] = Counter()
        self.given: Counter[Owned] = Counter()
        self.due: dict[Owned, datetime] = {}
        self.bucket_waiting: set[Owned] = set()
        self.skip_keys: set[str] = set()
        self.skip_buckets: set[str] = set()
        self.eligible: list[tuple[tuple[Any, ...], Any]] = []
        # CANCEL_NEWEST rows that found no room: cancelled only if their key
        # is still full once the claim knows what it starts.
        self.no_room: list[Any] = []
        # The claim reached _MAX_HELD keys and buckets and read no further.
        self.capped = False

    async def consider(self, rows: Sequence[Any]) -> None:
        rows = self._within_cap(rows)
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

    def _within_cap(self, rows: Sequence[Any]) -> Sequence[Any]:
        """The rows up to the first whose key or bucket would take the claim
        past _MAX_HELD (each is an advisory lock held to the commit)."""
        known = len(self.running) + len(self.next_at) + len(self.unheld_buckets)
        new: set[tuple[str, Owned]] = set()
        for index, row in enumerate(rows):
            if row.concurrency_key is not None and _key(row) not in self.running:
                new.add(("key", _key(row)))
            bucket = _bucket(row)
            if row.rate_bucket is not None and bucket not in self.next_at:
                if bucket not in self.unheld_buckets:
                    new.add(("bucket", bucket))
            if known + len(new) > _MAX_HELD:
                self.capped = True
                return rows[:index]
        return rows

    def _consider(self, row: Any) -> None:
        turn = 1
        if row.concurrency_key is not None:
            key = _key(row)
            running = self.running[key]
            if running is None:
                self.skip_keys.add(_joined(key))
                return
            turn = self.turns[key] + 1
            strategy = ConcurrencyStrategy(row.concurrency_strategy)
            # CANCEL_OLDEST makes room by cancelling running tasks.
            room = row.concurrency_limit
            if strategy is not ConcurrencyStrategy.CANCEL_OLDEST:
                room -= running
            if turn > room:
                if strategy is ConcurrencyStrategy.CANCEL_NEWEST:
                    self.no_room.append(row)
                else:
                    self.skip_keys.add(_joined(key))
                return
        if row.rate_bucket is not None and not self._bucket_allows(row):
            return
        if row.concurrency_key is not None:
            # A turn is taken only by a row that may start.
            self.turns[_key(row)] = turn
        # Priority first; within it keys take turns (a key's first task,
        # then every key's second…), then age.
        self.eligible.append(((row.dispatch_rank, turn, row.queued_at, row.id), row))

    def _bucket_allows(self, row: Any) -> bool:
        """Whether the row's bucket allows one more start in this claim: the
        next start's time has come (a claim that comes late starts together
        the starts whose times have passed, at most the bucket's limit)."""
        bucket = _bucket(row)
        if bucket not in self.unheld_buckets and self.given[bucket] < row.rate_limit:
            due = self.due.get(bucket) or self.next_at.get(bucket) or self.now
            if due <= self.now:
                self.given[bucket] += 1
                self.due[bucket] = due + _spacing(row)
                return True
        self.skip_buckets.add(_joined(bucket))
        self.bucket_waiting.add(bucket)
        return False

    async def displace(
        self, started: Sequence[Any]
    ) -> tuple[list[Any], list[tuple[Any, str]], bool]:
        """For each CANCEL_OLDEST key the started rows push past its limit,
        its oldest running tasks, to cancel. One that another transaction
        holds (on PostgreSQL: most likely finishing) is left alone, and as
        many of the key's newest rows do not start: the rows that start, the
        running ones to cancel, and whether some were held back so."""
        starting: Counter[Owned] = Counter(_key(r) for r in started if r.concurrency_key)
        limits: dict[Owned, tuple[str, int]] = {
            _key(r): (r.concurrency_key, r.concurrency_limit)
            for r in started
            if r.concurrency_strategy == ConcurrencyStrategy.CANCEL_OLDEST
        }
        cancelled: list[tuple[Any, str]] = []
        held_back: Counter[Owned] = Counter()
        for owned, (key, limit) in sorted(limits.items()):
            over = (self.running[owned] or 0) + starting[owned] - limit
            if over > 0:
                reason = f"{full_key_reason(key, limit)}: a newer task takes its place"
                oldest = await _oldest_running(self.conn, owned, over)
                cancelled += [(row, reason) for row in oldest]
                held_back[owned] = over - len(oldest)
        kept: list[Any] = []
        for row in reversed(started):
            if row.concurrency_key is not None and held_back[_key(row)] > 0:
                held_back[_key(row)] -= 1
                continue
            kept.append(row)
        kept.reverse()
        return kept, cancelled, len(kept) < len(started)

    def cancel_newest(self, started: Sequence[Any], locked: Sequence[Any]) -> list[tuple[Any, str]]:
        """The CANCEL_NEWEST rows (of `locked`) whose key is full with what
        runs and what this claim starts."""
        starting: Counter[Owned] = Counter(_key(r) for r in started if r.concurrency_key)
        return [
            (row, full_key_reason(row.concurrency_key, row.concurrency_limit))
            for row in locked
            if (self.running[_key(row)] or 0) + starting[_key(row)] >= row.concurrency_limit
        ]

    async def move_buckets(self, started: Sequence[Any], at: datetime) -> datetime | None:
        """Move on the buckets of the tasks started `at`, each by the spacing
        of each of its starts from `at` itself (not from the time the first
        was due: starts made together count as made at once, so no window of
        a period holds more than the limit); the first time a bucket that
        made a task wait allows a start."""
        moved: dict[Owned, datetime] = {}
        for row in started:
            if row.rate_bucket is not None:
                bucket = _bucket(row)
                moved[bucket] = moved.get(bucket, at) + _spacing(row)
        if moved:
            values = [
                {"owner_id": owner, "name": name, "next_at": next_at}
                for (owner, name), next_at in sorted(moved.items())
            ]
            await self.conn.execute(_upsert_buckets(self.conn), values)
        waits = [
            moved.get(bucket) or self.next_at.get(bucket)
            for bucket in self.bucket_waiting - self.unheld_buckets
        ]
        return min((when for when in waits if when is not None), default=None)


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
        if len(decider.eligible) >= wanted or len(rows) < asked or decider.capped:
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
    no_room = decider.no_room
    if conn.dialect.name == "postgresql":
        ids = [row.id for row in started] + [row.id for row in no_room]
        locked = {row.id for row in await conn.execute(claiming.LOCK_CHOSEN, {"chosen_ids": ids})}
        started = [row for row in started if row.id in locked]
        no_room = [row for row in no_room if row.id in locked]
        # The transaction's time was taken before it held its keys; one that
        # freed a slot it counted on may have taken a later time and still
        # committed first. Starting at the time it counted keeps a key's
        # recorded intervals within its limit.
        now = max(now, utcnow())
    started, cancel_running, held_back = await decider.displace(started)
    # Only now is it known what starts: a CANCEL_NEWEST row is cancelled
    # against that, not against turns given to rows that did not start.
    cancel_queued = decider.cancel_newest(started, no_room)
    wake_at = await decider.move_buckets(started, now)
    key_full = bool(decider.skip_keys) or held_back or decider.capped
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
    """Of the key's `count` oldest running tasks, those this transaction
    could lock (on PostgreSQL; SQLite has one writer), still running: a
    claim never waits for a row another transaction holds, which may hold
    a run this one has locked (a report settles its runs before it claims)."""
    parameters = {"owner_id": key[0], "key": key[1], "count": count}
    return list((await conn.execute(_OLDEST_RUNNING, parameters)).all())


def _oldest_first(rows: Any) -> tuple[Any, ...]:
    return (rows.c.started_at, rows.c.queued_at, rows.c.id)


_OLDEST = (
    select(tasks.c.id)
    .where(
        tasks.c.owner_id == bindparam("owner_id"),
        tasks.c.concurrency_key == bindparam("key"),
        tasks.c.status == TaskStatus.RUNNING,
    )
    .order_by(*_oldest_first(tasks))
    .limit(bindparam("count"))
)
_OLDEST_RUNNING = (
    select(tasks)
    .where(tasks.c.id.in_(_OLDEST.scalar_subquery()), tasks.c.status == TaskStatus.RUNNING)
    .order_by(*_oldest_first(tasks))
    .with_for_update(skip_locked=True)
)


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


def _spacing(row: Any) -> timedelta:
    return timedelta(seconds=row.rate_period_seconds / row.rate_limit)


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
