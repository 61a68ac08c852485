"""Login sessions: refresh tokens (stored as hashes) and their families."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.schema import sessions, users
from orchestrator.store.types import utcnow


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    family_id: str
    expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


def _session(row: Any) -> Session:
    return Session(
        id=row.id,
        user_id=row.user_id,
        family_id=row.family_id,
        expires_at=row.expires_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
    )


async def create(
    conn: AsyncConnection,
    *,
    user_id: str,
    family_id: str | None,
    refresh_token_hash: str,
    expires_at: datetime,
) -> Session:
    session = Session(
        id=str(uuid.uuid4()),
        user_id=user_id,
        family_id=family_id or str(uuid.uuid4()),
        expires_at=expires_at,
        rotated_at=None,
        revoked_at=None,
    )
    await conn.execute(
        sessions.insert().values(
            id=session.id,
            user_id=user_id,
            family_id=session.family_id,
            refresh_token_hash=refresh_token_hash,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )
    return session


async def by_refresh_hash(conn: AsyncConnection, refresh_token_hash: str) -> Session | None:
    row = (
        await conn.execute(
            select(sessions).where(sessions.c.refresh_token_hash == refresh_token_hash)
        )
    ).first()
    return _session(row) if row else None


async def mark_rotated(conn: AsyncConnection, session_id: str) -> bool:
    """Claims the token for one rotation; False when someone already did."""
    result = await conn.execute(
        update(sessions)
        .where(sessions.c.id == session_id, sessions.c.rotated_at.is_(None))
        .values(rotated_at=utcnow())
    )
    return result.rowcount == 1


async def revoke_family(conn: AsyncConnection, family_id: str) -> None:
    await conn.execute(
        update(sessions)
        .where(sessions.c.family_id == family_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def _active(family_id: str) -> ColumnElement[bool]:
    return exists().where(
        sessions.c.family_id == family_id,
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > utcnow(),
    )


async def family_active(conn: AsyncConnection, family_id: str) -> bool:
    """True while the family has a token that is neither revoked nor expired."""
    return bool(await conn.scalar(select(_active(family_id))))


async def live_role(conn: AsyncConnection, user_id: str, family_id: str) -> str | None:
    """The user's role if the user is enabled and the session still live:
    what an access token is worth right now."""
    return await conn.scalar(
        select(users.c.role).where(
            users.c.id == user_id, users.c.disabled.is_(False), _active(family_id)
        )
    )


async def revoke_user(conn: AsyncConnection, user_id: str) -> None:
    await conn.execute(
        update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
