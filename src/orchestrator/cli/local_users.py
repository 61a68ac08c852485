"""`orchestrator user create NAME --local`: a user written straight into the
database named by DATABASE_URL (migrations first), for the first admin of a
server that has none yet; no server, no token."""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import SQLAlchemyError

from orchestrator.auth.passwords import hash_password
from orchestrator.cli.exits import DatabaseUnavailable
from orchestrator.client import User
from orchestrator.engine.accounts import check_new_user
from orchestrator.store import Database, upgrade
from orchestrator.store import users as user_store


async def create_user(database_url: str, username: str, password: str, role: str) -> User:
    """The new user; InvalidArgument for a bad name, password or role,
    AlreadyExists if the name is taken, DatabaseUnavailable if the database cannot
    be opened."""
    check_new_user(username, password, role)
    password_hash = await asyncio.to_thread(hash_password, password)
    database = Database(database_url)
    try:
        await upgrade(database)
        async with database.write() as conn:
            stored = await user_store.create(conn, username, password_hash, role)
    except (OSError, SQLAlchemyError) as exc:
        # Not the URL: it may carry a password.
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DatabaseUnavailable(
            f"cannot open the database named by DATABASE_URL: {reason}"
        ) from None
    finally:
        await database.close()
    return User(stored.id, stored.username, stored.role, stored.disabled, stored.created_at)
