"""Whether credentials still work, for many at once: what long-lived streams
re-check, and what a claim holds while it hands out work."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import Credential
from orchestrator.store.schema import api_tokens, sessions, users


@dataclass(frozen=True)
class _Kind:
    """Where a kind of credential lives, and when it works."""

    table: Table
    id: str  # the column `Credential.id` names
    owner: str
    works: Callable[[datetime], ColumnElement[bool]]

    def live(self, now: datetime) -> Select[Any]:
        """(id, owner) of the credentials of this kind that work."""
        key, owner = self.table.c[self.id], self.table.c[self.owner]
        return (
            select(key, owner)
            .join(users, users.c.id == owner)
            .where(self.works(now), users.c.disabled.is_(False))
        )


_KINDS = {
    "api_token": _Kind(
        api_tokens,
        "id",
        "owner_id",
        lambda now: and_(
            api_tokens.c.revoked_at.is_(None),
            or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now),
        ),
    ),
    # A login session is its refresh-token family: it works while one of
    # its tokens is neither revoked nor expired.
    "session": _Kind(
        sessions,
        "family_id",
        "user_id",
        lambda now: and_(sessions.c.revoked_at.is_(None), sessions.c.expires_at > now),
    ),
}


async def dead(
    conn: AsyncConnection, credentials: Collection[Credential], now: datetime
) -> set[Credential]:
    """Those of `credentials` that no longer work: revoked, expired, or
    their user disabled or gone."""
    live: set[Credential] = set()
    for name, kind in _KINDS.items():
        ids = {c.id for c in credentials if c.kind == name}
        if ids:
            query = kind.live(now).where(kind.table.c[kind.id].in_(ids)).distinct()
            live |= {Credential(name, row[1], row[0]) for row in await conn.execute(query)}
    return set(credentials) - live


async def hold(conn: AsyncConnection, credential: Credential, now: datetime) -> bool:
    """Whether `credential` works, kept so until this transaction ends: on
    PostgreSQL its rows are share-locked, so a revocation either commits
    first (and this sees it) or waits for this transaction. SQLite has one
    writer, which serializes the two anyway."""
    kind = _KINDS[credential.kind]
    query = (
        kind.live(now)
        .where(
            kind.table.c[kind.id] == credential.id,
            kind.table.c[kind.owner] == credential.user_id,
        )
        .with_for_update(read=True)
        .limit(1)
    )
    return (await conn.execute(query)).first() is not None
