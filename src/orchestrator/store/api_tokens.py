"""API tokens: long-lived credentials, kept as hashes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.store.schema import api_tokens, users
from orchestrator.store.types import utcnow


@dataclass(frozen=True)
class ApiToken:
    id: str
    owner_id: str
    name: str
    scope: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class TokenOwner:
    """What a presented token stands for: the token and its owner's state."""

    token: ApiToken
    role: str
    disabled: bool


def _token(row: Any) -> ApiToken:
    return ApiToken(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


async def create(conn: AsyncConnection, token: ApiToken, token_hash: str) -> None:
    await conn.execute(
        api_tokens.insert().values(
            id=token.id,
            owner_id=token.owner_id,
            name=token.name,
            scope=token.scope,
            prefix=token.prefix,
            token_hash=token_hash,
            created_at=token.created_at,
            expires_at=token.expires_at,
        )
    )


async def by_hash(conn: AsyncConnection, token_hash: str) -> TokenOwner | None:
    row = (
        await conn.execute(
            select(api_tokens, users.c.role, users.c.disabled)
            .join(users, users.c.id == api_tokens.c.owner_id)
            .where(api_tokens.c.token_hash == token_hash)
        )
    ).first()
    return TokenOwner(_token(row), row.role, row.disabled) if row else None


async def owned_by(conn: AsyncConnection, owner_id: str | None) -> list[ApiToken]:
    query = select(api_tokens).order_by(api_tokens.c.created_at.desc())
    if owner_id is not None:
        query = query.where(api_tokens.c.owner_id == owner_id)
    return [_token(row) for row in await conn.execute(query)]


async def by_id(conn: AsyncConnection, token_id: str) -> ApiToken | None:
    row = (await conn.execute(select(api_tokens).where(api_tokens.c.id == token_id))).first()
    return _token(row) if row else None


async def touch(conn: AsyncConnection, token_id: str, now: datetime) -> None:
    await conn.execute(
        update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=now)
    )


async def revoke(conn: AsyncConnection, token_id: str) -> None:
    await conn.execute(
        update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
