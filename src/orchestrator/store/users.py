"""Users: the SQL behind accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.errors import AlreadyExists
from orchestrator.store.schema import users
from orchestrator.store.types import utcnow


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    role: str
    disabled: bool
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        password_hash=row.password_hash,
        role=row.role,
        disabled=row.disabled,
        created_at=row.created_at,
    )


async def create(conn: AsyncConnection, username: str, password_hash: str, role: str) -> User:
    now = utcnow()
    user_id = str(uuid.uuid4())
    values = {
        "id": user_id,
        "username": username,
        "password_hash": password_hash,
        "role": role,
        "disabled": False,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(values))
    except IntegrityError:
        raise AlreadyExists(f"user {username!r} already exists") from None
    return User(
        id=user_id,
        username=username,
        password_hash=password_hash,
        role=role,
        disabled=False,
        created_at=now,
    )


async def by_username(conn: AsyncConnection, username: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.username == username))).first()
    return _user(row) if row else None


async def by_id(conn: AsyncConnection, user_id: str) -> User | None:
    row = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return _user(row) if row else None


async def set_password(conn: AsyncConnection, user_id: str, password_hash: str) -> None:
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, updated_at=utcnow())
    )


async def set_role(conn: AsyncConnection, user_id: str, role: str) -> None:
    await conn.execute(
        update(users).where(users.c.id == user_id).values(role=role, updated_at=utcnow())
    )


async def page(conn: AsyncConnection, after: str | None, limit: int) -> list[User]:
    """Users by name, after the given one."""
    query = select(users).order_by(users.c.username).limit(limit)
    if after is not None:
        query = query.where(users.c.username > after)
    return [_user(row) for row in await conn.execute(query)]


async def set_disabled(conn: AsyncConnection, user_id: str, disabled: bool) -> None:
    await conn.execute(
        update(users).where(users.c.id == user_id).values(disabled=disabled, updated_at=utcnow())
    )
