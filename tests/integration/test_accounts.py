"""orchestrator.engine.accounts.Accounts on the selected backend: logging in,
rotating refresh tokens, reuse detection, logout, users."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from orchestrator.auth import passwords
from orchestrator.auth.tokens import JwtManager
from orchestrator.engine.accounts import BAD_LOGIN, Accounts
from orchestrator.errors import InvalidArgument, NotFound, Unauthenticated
from orchestrator.store import Database
from orchestrator.store import sessions as session_store
from orchestrator.store.schema import login_failures, sessions, users
from tests.integration.conftest import ADMIN_PASSWORD
from tests.support.grpc import wait_until

PEER = "ipv4:127.0.0.1:40000"


async def refused(call: Awaitable[object]) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await call
    return caught.value.message


async def age_rotation(database: Database, seconds: int) -> None:
    """Pretend every rotated refresh token was rotated `seconds` ago."""
    async with database.write() as conn:
        await conn.execute(
            update(sessions)
            .where(sessions.c.rotated_at.is_not(None))
            .values(rotated_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


async def test_login(accounts: Accounts) -> None:
    tokens = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    assert tokens.user.username == "admin"
    assert tokens.user.is_admin
    assert tokens.expires_in == 900
    assert tokens.refresh_token and tokens.refresh_token != tokens.access_token
    identity = await accounts.authenticate(tokens.access_token)
    assert (identity.user_id, identity.role) == (tokens.user.id, "admin")
    assert identity.session_id


async def test_bad_logins_are_indistinguishable(accounts: Accounts, database: Database) -> None:
    await accounts.create_user("mallory", "mallory-password", "member")
    async with database.write() as conn:
        await conn.execute(update(users).where(users.c.username == "mallory").values(disabled=True))
    messages = {
        await refused(accounts.login("admin", "wrong-password", PEER)),
        await refused(accounts.login("nobody", ADMIN_PASSWORD, PEER)),
        await refused(accounts.login("", "", PEER)),
        await refused(accounts.login("mallory", "mallory-password", PEER)),  # disabled
    }
    assert messages == {BAD_LOGIN}


async def counted_keys(database: Database) -> list[str]:
    async with database.read() as conn:
        return list((await conn.execute(select(login_failures.c.key))).scalars())


async def test_a_login_given_up_before_its_answer_does_not_count(
    accounts: Accounts, database: Database
) -> None:
    # Hashing ahead of it on the one hashing thread: the login is counted,
    # then waits for its check.
    ahead = [
        asyncio.create_task(passwords.hash_password_async(f"password-{index}"))
        for index in range(20)
    ]
    login = asyncio.create_task(accounts.login("admin", "wrong-password", PEER))
    await wait_until(lambda: counted_keys(database), timeout=10)
    assert not login.done() and not all(task.done() for task in ahead)

    login.cancel()  # as gRPC does when the caller hangs up
    with pytest.raises(asyncio.CancelledError):
        await login

    assert await counted_keys(database) == []
    await asyncio.gather(*ahead)
    assert await counted_keys(database) == []


async def test_refresh_rotates(accounts: Accounts, database: Database) -> None:
    first = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    second = await accounts.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.user.id == first.user.id
    first_identity = await accounts.authenticate(first.access_token)
    second_identity = await accounts.authenticate(second.access_token)
    assert first_identity.session_id == second_identity.session_id  # one family
    third = await accounts.refresh(second.refresh_token)
    assert third.refresh_token not in (first.refresh_token, second.refresh_token)


async def test_unknown_refresh_token_is_refused(accounts: Accounts) -> None:
    assert await refused(accounts.refresh("not-a-token")) == Unauthenticated().message
    assert await refused(accounts.refresh("")) == Unauthenticated().message


async def test_racing_refresh_is_refused_but_family_kept(accounts: Accounts) -> None:
    first = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    second = await accounts.refresh(first.refresh_token)
    await refused(accounts.refresh(first.refresh_token))  # moments later: a client race
    assert (await accounts.refresh(second.refresh_token)).user.username == "admin"


async def test_reused_refresh_token_revokes_the_family(
    accounts: Accounts, database: Database
) -> None:
    first = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    other_session = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    second = await accounts.refresh(first.refresh_token)
    family = (await accounts.authenticate(second.access_token)).session_id
    assert family is not None
    await age_rotation(database, seconds=60)
    await refused(accounts.refresh(first.refresh_token))  # reuse of a stolen token
    await refused(accounts.refresh(second.refresh_token))  # the whole family is gone
    async with database.read() as conn:
        assert not await session_store.family_active(conn, family)
    await refused(accounts.authenticate(second.access_token))
    # Another login of the same user is a different family, untouched.
    assert (await accounts.refresh(other_session.refresh_token)).user.username == "admin"


async def test_expired_refresh_token_is_refused(accounts: Accounts, database: Database) -> None:
    tokens = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    async with database.write() as conn:
        await conn.execute(
            update(sessions).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await refused(accounts.refresh(tokens.refresh_token))


async def test_logout_with_refresh_token(accounts: Accounts) -> None:
    tokens = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    identity = await accounts.authenticate(tokens.access_token)
    await accounts.logout(identity, tokens.refresh_token)
    await refused(accounts.refresh(tokens.refresh_token))
    await refused(accounts.authenticate(tokens.access_token))  # at once, not at expiry


async def test_logout_without_refresh_token_ends_the_callers_session(accounts: Accounts) -> None:
    tokens = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    await accounts.logout(await accounts.authenticate(tokens.access_token), "")
    await refused(accounts.refresh(tokens.refresh_token))


async def test_logout_with_someone_elses_token_is_refused(accounts: Accounts) -> None:
    await accounts.create_user("bob", "bob-password", "member")
    admin = await accounts.login("admin", ADMIN_PASSWORD, PEER)
    bob = await accounts.login("bob", "bob-password", PEER)
    bob_identity = await accounts.authenticate(bob.access_token)
    await refused(accounts.logout(bob_identity, admin.refresh_token))
    assert (await accounts.refresh(admin.refresh_token)).user.username == "admin"


async def test_authenticate_refuses_a_bad_token(accounts: Accounts) -> None:
    forged = JwtManager("some-other-secret-" + "y" * 20, 900).issue(
        user_id="x", role="admin", session_id="s"
    )
    await refused(accounts.authenticate(forged))


async def test_ensure_admin_is_idempotent_and_resets_the_password(accounts: Accounts) -> None:
    await accounts.ensure_admin("admin", "new-admin-password")
    await refused(accounts.login("admin", ADMIN_PASSWORD, PEER))
    assert (await accounts.login("admin", "new-admin-password", PEER)).user.is_admin


async def test_ensure_admin_promotes_an_existing_member(accounts: Accounts) -> None:
    await accounts.create_user("carol", "carol-password", "member")
    await accounts.ensure_admin("carol", "carol-password-2")
    assert (await accounts.login("carol", "carol-password-2", PEER)).user.role == "admin"


async def test_create_user_checks_every_field(accounts: Accounts) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await accounts.create_user("a b", "short", "superuser")
    fields = [violation.field for violation in caught.value.violations]
    assert fields == ["username", "password", "role"]


async def test_get_user(accounts: Accounts) -> None:
    created = await accounts.create_user("dave", "dave-password", "member")
    assert await accounts.get_user(created.id) == created
    with pytest.raises(NotFound):
        await accounts.get_user("00000000-0000-0000-0000-000000000000")
