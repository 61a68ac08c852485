"""Claim cost behind a backlog: a database holding `--backlog` queued tasks
of one type (`common`) and a few of another (`rare`), then claims through
the store, each in its own transaction, rolled back so that every claim sees
the same queue. Prints one JSON line on stdout; the query plans and progress
go to stderr.

    python -m bench.claim [--backlog 300000] [--rare 5] [--claims 200]
                          [--warmup 10] [--slots 10] [--database sqlite|postgres]
                          [--delayed]

With `--delayed` the backlog waits for a start time a week away, and
`--rare` tasks of the common type that may start now stand behind it: what
a claim pays to look past tasks that are queued but not yet due.

Exit codes: 0 success (the JSON line was printed), 1 the run failed, 2 bad
arguments, 130 interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench._harness import BenchFailure, _drop_postgres, _postgres, main_of
from bench._procs import log
from bench._stats import summary_ms
from orchestrator.model import NewTask
from orchestrator.store import Database, upgrade
from orchestrator.store import tasks as task_store
from orchestrator.store import users as user_store
from orchestrator.store.types import utcnow

T = TypeVar("T")
COMMON = "common"
RARE = "rare"
_FILL_CHUNK = 5000
# A worker serving the most types a worker may declare (MAX_TASK_TYPES),
# the rare one among them, but not the common one.
_WIDE = [RARE, *(f"idle-{k}" for k in range(255))]


@dataclass(frozen=True)
class Args:
    backlog: int
    rare: int
    claims: int
    warmup: int
    slots: int
    database: str
    delayed: bool


class _RolledBack(Exception):
    """Ends a measured claim's transaction without committing it."""


def parse(argv: Sequence[str]) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench.claim", description=__doc__)
    parser.add_argument("--backlog", type=int, default=300_000)
    parser.add_argument("--rare", type=int, default=5)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10, help="claims first run, not counted")
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--delayed", action="store_true", help="the backlog starts in a week")
    ns = parser.parse_args(argv)
    if min(ns.backlog, ns.rare, ns.claims, ns.slots) < 1 or ns.warmup < 0:
        parser.error("--backlog, --rare, --claims and --slots must be at least 1")
    return Args(ns.backlog, ns.rare, ns.claims, ns.warmup, ns.slots, ns.database, ns.delayed)


@contextmanager
def fresh_database(kind: str) -> Iterator[str]:
    """DATABASE_URL of a new, empty database, removed on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-claim-"))
    name = f"orch_bench_{secrets.token_hex(6)}" if kind == "postgres" else None
    try:
        if name is None:
            yield f"sqlite:{workdir / 'bench.db'}"
        else:
            asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        if name is not None:
            _drop_postgres(name)
        shutil.rmtree(workdir, ignore_errors=True)


async def fill(db: Database, args: Args) -> None:
    """The backlog, through the store's own bulk insert, oldest first: the
    common type's tasks are all ahead of the rare ones in dispatch order."""
    async with db.write() as conn:
        owner = await user_store.create(conn, "bench", "unused-hash", "member")
    later = utcnow() + timedelta(days=7) if args.delayed else None
    parts = [(COMMON, args.backlog, later), (RARE, args.rare, None)]
    if args.delayed:
        parts.append((COMMON, args.rare, None))
    for kind, count, not_before in parts:
        new = NewTask(title="t", type=kind, input={}, start=True, not_before=not_before)
        for start in range(0, count, _FILL_CHUNK):
            size = min(_FILL_CHUNK, count - start)
            rows = [task_store.NewRow(owner.id, new) for _ in range(size)]
            async with db.write() as conn:
                await task_store.insert_many(conn, rows, utcnow())
    if db.dialect == "postgresql":
        async with db.write() as conn:
            await conn.execute(text("ANALYZE tasks"))


async def claim(conn: AsyncConnection, types: Sequence[str], slots: int) -> int:
    now = utcnow()
    claimed = await task_store.claim(
        conn,
        slots=[("bench-worker", slots)],
        types=types,
        owner_id=None,
        now=now,
        lease_expires_at=now,
    )
    return len(claimed.started)


async def timed(db: Database, types: Sequence[str], args: Args) -> dict[str, Any]:
    """Claims of `types`, each alone in a transaction that is rolled back:
    the claim itself (its two statements) and the whole transaction."""
    claim_seconds: list[float] = []
    transaction_seconds: list[float] = []
    sizes: set[int] = set()

    async def one(conn: AsyncConnection) -> None:
        started = time.perf_counter()
        sizes.add(await claim(conn, types, args.slots))
        claim_seconds.append(time.perf_counter() - started)

    for _ in range(args.warmup + args.claims):
        began = time.perf_counter()
        await rolled_back(db, one)
        transaction_seconds.append(time.perf_counter() - began)
    del claim_seconds[: args.warmup], transaction_seconds[: args.warmup]
    if len(sizes) != 1:
        raise BenchFailure(f"claims of {len(types)} types took {sorted(sizes)} tasks")
    return {
        "types": len(types),
        "claimed": sizes.pop(),
        "claim_ms": summary_ms(claim_seconds),
        "transaction_ms": summary_ms(transaction_seconds),
    }


async def plan(db: Database, types: Sequence[str], args: Args) -> list[str]:
    """The plan of the claim's SELECT for these types, on the queue as it
    stands (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL)."""
    seen: list[tuple[str, Any]] = []

    def record(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        await rolled_back(db, lambda conn: claim(conn, types, args.slots))
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    statement, parameters = seen[0]
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN ANALYZE "

    async def explained(conn: AsyncConnection) -> list[str]:
        rows = await conn.exec_driver_sql(explain + statement, parameters)
        return [str(row[-1]) for row in rows]

    return await rolled_back(db, explained)


async def rolled_back(db: Database, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work` in a write transaction that is then rolled back."""
    done: list[T] = []
    try:
        async with db.write() as conn:
            done.append(await work(conn))
            raise _RolledBack
    except _RolledBack:
        return done[0]


async def measure_on(database_url: str, args: Args) -> dict[str, Any]:
    db = Database(database_url)
    try:
        await upgrade(db)
        began = time.perf_counter()
        await fill(db, args)
        fill_seconds = time.perf_counter() - began
        log(f"filled {args.backlog} + {args.rare} tasks in {fill_seconds:.1f} s")
        workers = {"rare": [RARE], "common": [COMMON], "both": [COMMON, RARE], "wide": _WIDE}
        results: dict[str, Any] = {}
        for name, types in workers.items():
            for line in await plan(db, types, args):
                log(f"plan ({name}): {line}")
            results[name] = await timed(db, types, args)
            log(f"{name}: {results[name]}")
        return {"fill_seconds": round(fill_seconds, 1), "workers": results}
    finally:
        await db.close()


def measure(args: Args) -> dict[str, Any]:
    load_before = os.getloadavg()
    with fresh_database(args.database) as url:
        results = asyncio.run(measure_on(url, args))
    return {
        "bench": "claim",
        "database": args.database,
        "backlog": args.backlog,
        "rare_tasks": args.rare,
        "claims": args.claims,
        "warmup": args.warmup,
        "slots": args.slots,
        "delayed": args.delayed,
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        **results,
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    return main_of(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
