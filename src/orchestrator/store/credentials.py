"""Whether credentials still work, for many at once: what long-lived streams
re-check, and what a claim holds while it hands out work."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import Credential
from orchestrator.store.schema import api_tokens, sessions, users


def _token_live(now: datetime) -> ColumnElement[bool]:
    return and_(
        api_tokens.c.revoked_at.is_(None),
        or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now),
        users.c.disabled.is_(False),
    )


def _session_live(now: datetime) -> ColumnElement[bool]:
    return and_(
        sessions.c.revoked_at.is_(None),
        sessions.c.expires_at > now,
        users.c.disabled.is_(False),
    )


async def dead(
    conn: AsyncConnection, credentials: Collection[Credential], now: datetime
) -> set[Credential]:
    """Those of `credentials` that no longer work: revoked, expired, or
    their user disabled or gone."""
    live: set[Credential] = set()
    token_ids = {c.id for c in credentials if c.kind == "api_token"}
    if token_ids:
        query = (
            select(api_tokens.c.id, api_tokens.c.owner_id)
            .join(users, users.c.id == api_tokens.c.owner_id)
            .where(api_tokens.c.id.in_(token_ids), _token_live(now))
        )
        live |= {Credential("api_token", row.owner_id, row.id) for row in await conn.execute(query)}
    families = {c.id for c in credentials if c.kind == "session"}
    if families:
        query = (
            select(sessions.c.family_id, sessions.c.user_id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.family_id.in_(families), _session_live(now))
            .distinct()
        )
        live |= {
            Credential("session", row.user_id, row.family_id) for row in await conn.execute(query)
        }
    return set(credentials) - live


async def hold(conn: AsyncConnection, credential: Credential, now: datetime) -> bool:
    """Whether `credential` works, kept so until this transaction ends: on
    PostgreSQL its rows are share-locked, so a revocation either commits
    first (and this sees it) or waits for this transaction. SQLite has one
    writer, which serializes the two anyway."""
    if credential.kind == "api_token":
        query = (
            select(api_tokens.c.id)
            .join(users, users.c.id == api_tokens.c.owner_id)
            .where(
                api_tokens.c.id == credential.id,
                api_tokens.c.owner_id == credential.user_id,
                _token_live(now),
            )
            .with_for_update(read=True)
        )
    else:
        query = (
            select(sessions.c.id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(
                sessions.c.family_id == credential.id,
                sessions.c.user_id == credential.user_id,
                _session_live(now),
            )
            .with_for_update(read=True)
        )
    return (await conn.execute(query.limit(1))).first() is not None
