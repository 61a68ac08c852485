"""Login attempts counted against a key ("user:NAME", "peer:ADDRESS"), in the
database so that every replica sees every other's.

Counting and adding must be one step for a key, or two replicas could both
see room for one more attempt and both take it: on PostgreSQL each key is
held with a transaction-scoped advisory lock; on SQLite a write transaction
already has the file to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.schema import login_failures

# The two-argument form of PostgreSQL's advisory locks, under a namespace of
# its own: never the same lock as the one-argument ones in store/locks.py.
_LOCK_NAMESPACE = 0x6C6F67


async def lock(conn: AsyncConnection, keys: Iterable[str]) -> None:
    """Hold `keys` until the transaction ends; waits for whoever holds them."""
    if conn.dialect.name != "postgresql":
        return
    # One order for everyone, so two logins sharing keys cannot deadlock.
    for key in sorted(set(keys)):
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, hashtext(:key))"),
            {"namespace": _LOCK_NAMESPACE, "key": key},
        )


async def since(
    conn: AsyncConnection, keys: Iterable[str], start: datetime
) -> dict[str, list[datetime]]:
    """The times of each key's attempts after `start`, oldest first."""
    found: dict[str, list[datetime]] = {key: [] for key in keys}
    rows = await conn.execute(
        select(login_failures.c.key, login_failures.c.created_at)
        .where(login_failures.c.key.in_(list(found)), login_failures.c.created_at > start)
        .order_by(login_failures.c.created_at)
    )
    for key, created_at in rows:
        found[key].append(created_at)
    return found


async def add(conn: AsyncConnection, keys: Iterable[str], at: datetime) -> list[int]:
    """One attempt for each key; the ids of the rows, to take them back."""
    rows = await conn.execute(
        insert(login_failures)
        .values([{"key": key, "created_at": at} for key in keys])
        .returning(login_failures.c.id)
    )
    return list(rows.scalars())


async def remove(conn: AsyncConnection, ids: Iterable[int]) -> None:
    await conn.execute(delete(login_failures).where(login_failures.c.id.in_(list(ids))))


async def delete_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Forget attempts no window can see any more; how many."""
    result = await conn.execute(delete(login_failures).where(login_failures.c.created_at <= cutoff))
    return result.rowcount
