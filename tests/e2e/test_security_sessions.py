"""Sessions over the wire (DESIGN §4, "Accounts and security"): the access
token's claims, refresh rotation and reuse detection, concurrent refreshes,
logout, disabled users, password resets and rules, secrets kept only as
hashes, and the bearer-metadata cases tests/e2e/test_server_auth_gate.py
leaves out.

One server for the module: each test makes its own users, so no test sees
another's state. Failed logins here stay far below the per-address limit.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import asyncpg
import grpc
import jwt
import pytest
from grpc import aio

from orchestrator.auth.tokens import JwtManager
from orchestrator.engine.accounts import BAD_LOGIN
from orchestrator.errors import Unauthenticated
from orchestrator.proto import auth_pb2, auth_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from orchestrator.status import violations
from tests.support.grpc import Metadata, channel, login, wait_until
from tests.support.server import JWT_SECRET, ServerProcess

REFUSED = Unauthenticated().message
CALL_TIMEOUT = 30
# engine/accounts.py _CONCURRENT_REFRESH: a rotated token presented again
# within this long is a client racing itself, later it is a theft.
REUSE_GRACE_SECONDS = 5.0


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


async def outcome(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a unary call, OK included."""
    try:
        await call
    except aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture
async def ch(shared_server: ServerProcess) -> AsyncIterator[aio.Channel]:
    assert shared_server.address
    async with channel(shared_server.address) as opened:
        yield opened


@pytest.fixture
def auth(ch: aio.Channel) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(ch)


@pytest.fixture
async def admin(ch: aio.Channel) -> Metadata:
    return await login(ch)


class Member:
    """A member account made for one test, with its password."""

    def __init__(self, user: auth_pb2.User, password: str) -> None:
        self.user = user
        self.password = password


@pytest.fixture
async def member(auth: auth_pb2_grpc.AuthServiceStub, admin: Metadata) -> Member:
    password = "pw-" + secrets.token_urlsafe(12)
    user = await auth.CreateUser(
        auth_pb2.CreateUserRequest(
            username=f"member-{secrets.token_hex(4)}", password=password, role="member"
        ),
        metadata=admin,
        timeout=CALL_TIMEOUT,
    )
    return Member(user, password)


async def log_in(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, password: str | None = None
) -> auth_pb2.LoginResponse:
    return await auth.Login(
        auth_pb2.LoginRequest(username=member.user.username, password=password or member.password),
        timeout=CALL_TIMEOUT,
    )


async def who(auth: auth_pb2_grpc.AuthServiceStub, token: str) -> tuple[grpc.StatusCode, str]:
    return await outcome(auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bearer(token), timeout=10))


async def refresh(auth: auth_pb2_grpc.AuthServiceStub, token: str) -> auth_pb2.LoginResponse:
    return await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=CALL_TIMEOUT)


async def refresh_outcome(
    auth: auth_pb2_grpc.AuthServiceStub, token: str
) -> tuple[grpc.StatusCode, str]:
    return await outcome(refresh(auth, token))


OK = (grpc.StatusCode.OK, "")
GONE = (grpc.StatusCode.UNAUTHENTICATED, REFUSED)


# -- what Login hands out ----------------------------------------------------------


async def test_access_token_is_a_pinned_hs256_jwt_with_the_documented_claims(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    before = int(time.time())
    tokens = await log_in(auth, member)
    assert jwt.get_unverified_header(tokens.access_token)["alg"] == "HS256"
    claims = jwt.decode(
        tokens.access_token,
        JWT_SECRET,
        algorithms=["HS256"],
        audience="orchestrator",
        issuer="orchestrator",
        options={"require": ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]},
    )
    assert claims["typ"] == "access"
    assert claims["sub"] == member.user.id
    assert claims["role"] == "member"
    assert claims["sid"]
    assert before - 1 <= claims["iat"] == claims["nbf"] <= time.time() + 1
    assert claims["exp"] - claims["iat"] == tokens.expires_in == 3600
    assert tokens.token_type == "Bearer"


async def test_refresh_token_is_opaque_and_not_an_access_token(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    tokens = await log_in(auth, member)
    with pytest.raises(jwt.DecodeError):
        jwt.get_unverified_header(tokens.refresh_token)
    assert len(tokens.refresh_token) >= 40  # 32 random bytes, url-safe base64
    # Neither token does the other's job.
    assert await who(auth, tokens.refresh_token) == GONE
    assert await refresh_outcome(auth, tokens.access_token) == GONE


async def test_a_signature_alone_is_not_enough(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    # Even signed with the server's own secret, a token must name a live session.
    tokens = await log_in(auth, member)
    live_sid = jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]
    signer = JwtManager(JWT_SECRET, 600)
    invented = signer.issue(user_id=member.user.id, role="member", session_id=str(uuid.uuid4()))
    assert await who(auth, invented) == GONE
    # Control: the same signer with the live session id is accepted, so the
    # refusal above is the session check and nothing else.
    genuine = signer.issue(user_id=member.user.id, role="member", session_id=live_sid)
    assert (await who(auth, genuine))[0] == grpc.StatusCode.OK


async def test_the_role_comes_from_the_account_not_the_token(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    # A token claiming "admin" for a member (only the secret's holder could
    # make one) still acts as a member.
    tokens = await log_in(auth, member)
    sid = jwt.decode(tokens.access_token, options={"verify_signature": False})["sid"]
    claimed_admin = JwtManager(JWT_SECRET, 600).issue(
        user_id=member.user.id, role="admin", session_id=sid
    )
    reply = await auth.WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=bearer(claimed_admin), timeout=CALL_TIMEOUT
    )
    assert reply.user.role == "member"
    code, _ = await outcome(
        auth.ListUsers(auth_pb2.ListUsersRequest(), metadata=bearer(claimed_admin), timeout=10)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


# -- refresh -------------------------------------------------------------------------


async def test_refresh_rotates_and_the_new_tokens_work(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    first = await log_in(auth, member)
    second = await refresh(auth, first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert second.user.id == member.user.id
    assert await who(auth, second.access_token) == OK
    # Rotation chains: the new refresh token refreshes in turn.
    third = await refresh(auth, second.refresh_token)
    assert await who(auth, third.access_token) == OK


async def test_reused_refresh_token_revokes_its_family_after_the_grace(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, shared_server: ServerProcess
) -> None:
    """The honest way: the grace is real time on the server's clock, so the
    test lets it pass, but waits on the observable effect (the family's
    access token refused) rather than sleeping a guessed amount.

    Within the grace a reuse is refused and the family survives (two clients
    racing each other); every reuse attempt made while polling is one too, so
    the family surviving until the grace is over is checked on the way. The
    first reuse after it revokes the family: the thief's and the owner's
    tokens alike."""
    first = await log_in(auth, member)
    other_session = await log_in(auth, member)
    rotated = await refresh(auth, first.refresh_token)
    rotated_at = time.monotonic()

    # Within the grace: refused, family intact.
    assert await refresh_outcome(auth, first.refresh_token) == GONE
    assert await who(auth, rotated.access_token) == OK

    async def family_revoked() -> bool:
        assert await refresh_outcome(auth, first.refresh_token) == GONE
        status = await who(auth, rotated.access_token)
        if status == OK:
            # Still alive: only allowed while the grace lasts.
            assert time.monotonic() - rotated_at < REUSE_GRACE_SECONDS + 5
            return False
        assert status == GONE
        return True

    await wait_until(family_revoked, timeout=REUSE_GRACE_SECONDS + 10, interval=0.25)
    revoked_after = time.monotonic() - rotated_at
    # Measured from after the rotation's reply, so slightly less than the
    # grace the server measured from its own clock; never much less.
    assert revoked_after >= REUSE_GRACE_SECONDS - 1.0, revoked_after

    # The whole family is gone: the current refresh token too.
    assert await refresh_outcome(auth, rotated.refresh_token) == GONE
    assert await who(auth, first.access_token) == GONE
    # Not the user's other sessions, and the user may log in again.
    assert await who(auth, other_session.access_token) == OK
    assert await who(auth, (await log_in(auth, member)).access_token) == OK
    assert "refresh token reused" in shared_server.log


async def test_concurrent_refreshes_of_one_token_have_exactly_one_winner(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    tokens = await log_in(auth, member)
    results = await asyncio.gather(
        *(refresh(auth, tokens.refresh_token) for _ in range(10)), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, auth_pb2.LoginResponse)]
    losers = [r for r in results if not isinstance(r, auth_pb2.LoginResponse)]
    assert len(winners) == 1, results
    for loser in losers:
        assert isinstance(loser, aio.AioRpcError), loser
        assert (loser.code(), loser.details()) == GONE
    winner = winners[0]
    # The race is not a theft: the winner's tokens work, and keep working.
    assert await who(auth, winner.access_token) == OK
    assert await who(auth, tokens.access_token) == OK
    again = await refresh(auth, winner.refresh_token)
    assert await who(auth, again.access_token) == OK


# -- logout ----------------------------------------------------------------------------


async def test_logout_stops_the_access_and_refresh_token_at_once(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    session = await log_in(auth, member)
    other = await log_in(auth, member)
    assert await who(auth, session.access_token) == OK

    await auth.Logout(
        auth_pb2.LogoutRequest(refresh_token=session.refresh_token),
        metadata=bearer(session.access_token),
        timeout=CALL_TIMEOUT,
    )

    assert await who(auth, session.access_token) == GONE
    assert await refresh_outcome(auth, session.refresh_token) == GONE
    # Only that session ended.
    assert await who(auth, other.access_token) == OK
    assert (await refresh_outcome(auth, other.refresh_token)) == OK


async def test_logout_without_a_refresh_token_ends_the_callers_session_and_its_rotations(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    first = await log_in(auth, member)
    rotated = await refresh(auth, first.refresh_token)
    await auth.Logout(
        auth_pb2.LogoutRequest(), metadata=bearer(first.access_token), timeout=CALL_TIMEOUT
    )
    # One family: the rotated tokens end with it.
    assert await who(auth, first.access_token) == GONE
    assert await who(auth, rotated.access_token) == GONE
    assert await refresh_outcome(auth, rotated.refresh_token) == GONE


async def test_logout_with_someone_elses_refresh_token_is_refused_and_harmless(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, admin: Metadata
) -> None:
    victim = await log_in(auth, member)
    code, _ = await outcome(
        auth.Logout(
            auth_pb2.LogoutRequest(refresh_token=victim.refresh_token),
            metadata=admin,
            timeout=CALL_TIMEOUT,
        )
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert await who(auth, victim.access_token) == OK
    assert (await refresh_outcome(auth, victim.refresh_token)) == OK


@pytest.mark.postgres
async def test_logout_and_revocation_reach_another_replica(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, shared_server: ServerProcess
) -> None:
    """Two replicas on one database. engine/accounts.py keeps a live session
    check for _LIVE_SECONDS (1 s) and clears it on the replica that made the
    change; another replica may accept the token that long, no longer. API
    tokens are not cached: refused everywhere at once."""
    live_seconds = 1.0
    other = ServerProcess(shared_server.env["DATABASE_URL"])
    try:
        await asyncio.to_thread(other.start)
        assert other.address
        async with channel(other.address) as ch:
            elsewhere = auth_pb2_grpc.AuthServiceStub(ch)
            session = await log_in(auth, member)
            api = await auth.CreateApiToken(
                auth_pb2.CreateApiTokenRequest(name="replicas", scope="api"),
                metadata=bearer(session.access_token),
                timeout=CALL_TIMEOUT,
            )
            # Both replicas have just checked (and may keep) the session.
            assert await who(elsewhere, session.access_token) == OK
            assert await who(elsewhere, api.token) == OK

            await auth.RevokeApiToken(
                auth_pb2.RevokeApiTokenRequest(id=api.api_token.id),
                metadata=bearer(session.access_token),
                timeout=CALL_TIMEOUT,
            )
            assert await who(elsewhere, api.token) == GONE

            await auth.Logout(
                auth_pb2.LogoutRequest(refresh_token=session.refresh_token),
                metadata=bearer(session.access_token),
                timeout=CALL_TIMEOUT,
            )
            logged_out = time.monotonic()
            assert await who(auth, session.access_token) == GONE

            async def refused_elsewhere() -> bool:
                return await who(elsewhere, session.access_token) == GONE

            await wait_until(refused_elsewhere, timeout=live_seconds + 10, interval=0.05)
            assert time.monotonic() - logged_out <= live_seconds + 1.0
            assert await refresh_outcome(elsewhere, session.refresh_token) == GONE
    finally:
        await asyncio.to_thread(other.stop)


# -- disabled users, password resets, password rules --------------------------------------


async def test_disabling_a_user_stops_every_token_at_once_and_enabling_allows_a_new_login(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, admin: Metadata
) -> None:
    session = await log_in(auth, member)
    api = await auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="automation", scope="api"),
        metadata=bearer(session.access_token),
        timeout=CALL_TIMEOUT,
    )
    assert await who(auth, api.token) == OK

    disabled = await auth.DisableUser(
        auth_pb2.DisableUserRequest(id=member.user.id), metadata=admin, timeout=CALL_TIMEOUT
    )
    assert disabled.disabled

    assert await who(auth, session.access_token) == GONE
    assert await refresh_outcome(auth, session.refresh_token) == GONE
    assert await who(auth, api.token) == GONE
    # The right password gets the same answer as a wrong one.
    with pytest.raises(aio.AioRpcError) as caught:
        await log_in(auth, member)
    assert (caught.value.code(), caught.value.details()) == (
        grpc.StatusCode.UNAUTHENTICATED,
        BAD_LOGIN,
    )

    enabled = await auth.EnableUser(
        auth_pb2.EnableUserRequest(id=member.user.id), metadata=admin, timeout=CALL_TIMEOUT
    )
    assert not enabled.disabled
    fresh = await log_in(auth, member)
    assert await who(auth, fresh.access_token) == OK
    # Sessions ended by the disabling stay ended.
    assert await who(auth, session.access_token) == GONE
    assert await refresh_outcome(auth, session.refresh_token) == GONE


async def test_admin_cannot_disable_itself(
    auth: auth_pb2_grpc.AuthServiceStub, admin: Metadata
) -> None:
    me = await auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=admin, timeout=CALL_TIMEOUT)
    code, _ = await outcome(
        auth.DisableUser(auth_pb2.DisableUserRequest(id=me.user.id), metadata=admin, timeout=10)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    still = await outcome(auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=admin, timeout=10))
    assert still == OK


async def test_password_reset_ends_sessions_and_swaps_the_password(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, admin: Metadata
) -> None:
    session = await log_in(auth, member)
    new_password = "new-pw-" + secrets.token_urlsafe(8)
    await auth.ResetPassword(
        auth_pb2.ResetPasswordRequest(id=member.user.id, new_password=new_password),
        metadata=admin,
        timeout=CALL_TIMEOUT,
    )
    assert await who(auth, session.access_token) == GONE
    assert await refresh_outcome(auth, session.refresh_token) == GONE
    with pytest.raises(aio.AioRpcError) as caught:
        await log_in(auth, member)
    assert caught.value.details() == BAD_LOGIN
    assert await who(auth, (await log_in(auth, member, new_password)).access_token) == OK


async def test_a_refused_password_reset_changes_nothing(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, admin: Metadata
) -> None:
    session = await log_in(auth, member)
    with pytest.raises(aio.AioRpcError) as caught:
        await auth.ResetPassword(
            auth_pb2.ResetPasswordRequest(id=member.user.id, new_password="7-chars"),
            metadata=admin,
            timeout=CALL_TIMEOUT,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in violations(caught.value)] == ["new_password"]
    assert await who(auth, session.access_token) == OK
    assert await who(auth, (await log_in(auth, member)).access_token) == OK


@pytest.mark.parametrize(("length", "accepted"), [(7, False), (8, True)])
async def test_passwords_have_at_least_eight_characters(
    auth: auth_pb2_grpc.AuthServiceStub, admin: Metadata, length: int, accepted: bool
) -> None:
    request = auth_pb2.CreateUserRequest(
        username=f"pw-{secrets.token_hex(4)}", password="p" * length, role="member"
    )
    if accepted:
        await auth.CreateUser(request, metadata=admin, timeout=CALL_TIMEOUT)
        return
    with pytest.raises(aio.AioRpcError) as caught:
        await auth.CreateUser(request, metadata=admin, timeout=CALL_TIMEOUT)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in violations(caught.value)] == ["password"]


# -- secrets at rest ---------------------------------------------------------------------


async def database_dump(database_url: str) -> dict[str, list[str]]:
    """Every row of every table, as text, read straight from the database."""
    if database_url.startswith("sqlite:"):
        path = database_url.removeprefix("sqlite:")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            names = [
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return {n: [repr(row) for row in db.execute(f'SELECT * FROM "{n}"')] for n in names}
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        names = [
            r["tablename"]
            for r in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        return {
            n: [repr(tuple(r.values())) for r in await connection.fetch(f'SELECT * FROM "{n}"')]
            for n in names
        }
    finally:
        await connection.close()


async def test_secrets_are_stored_only_as_hashes(
    auth: auth_pb2_grpc.AuthServiceStub, member: Member, shared_server: ServerProcess
) -> None:
    first = await log_in(auth, member)
    rotated = await refresh(auth, first.refresh_token)
    api = await auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="ci", scope="api"),
        metadata=bearer(rotated.access_token),
        timeout=CALL_TIMEOUT,
    )
    dump = await database_dump(shared_server.env["DATABASE_URL"])
    everything = "\n".join(row for rows in dump.values() for row in rows)
    for secret in (
        member.password,
        first.refresh_token,
        rotated.refresh_token,
        api.token,
        api.token.removeprefix("orch_"),
    ):
        assert secret not in everything
    member_rows = [row for row in dump["users"] if member.user.id in row]
    assert len(member_rows) == 1
    assert "$argon2id$" in member_rows[0]
    # The sessions and API tokens are there, just not their secrets.
    assert any(member.user.id in row for row in dump["sessions"])
    assert any(api.api_token.id in row for row in dump["api_tokens"])


# -- bearer metadata cases the gate test leaves out ------------------------------------------


async def test_bearer_metadata_edge_cases_are_refused_never_internal(
    ch: aio.Channel, auth: auth_pb2_grpc.AuthServiceStub, member: Member
) -> None:
    token = (await log_in(auth, member)).access_token
    cases: dict[str, Metadata] = {
        "the same valid token twice": (*bearer(token), *bearer(token)),
        "valid token with trailing junk": (("authorization", f"Bearer {token} junk"),),
        "valid token, another scheme": (("authorization", f"Token {token}"),),
        "valid token, no scheme": (("authorization", token),),
        "API-token prefix, made up": bearer("orch_" + secrets.token_urlsafe(32)),
        "API-token prefix alone": bearer("orch_"),
        "refresh-like random string": bearer(secrets.token_urlsafe(32)),
    }
    tasks = tasks_pb2_grpc.TaskServiceStub(ch)
    for name, metadata in cases.items():
        unary = await outcome(auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10))
        assert unary == GONE, name
        stream = tasks.WatchTask(tasks_pb2.WatchTaskRequest(id="x"), metadata=metadata, timeout=10)
        with pytest.raises(aio.AioRpcError) as caught:
            await stream.read()
        assert (caught.value.code(), caught.value.details()) == GONE, name
    # Control: the token itself is fine.
    assert await who(auth, token) == OK


# -- hostile strings -------------------------------------------------------------------------


async def test_hostile_strings_never_answer_internal(
    ch: aio.Channel, auth: auth_pb2_grpc.AuthServiceStub, admin: Metadata
) -> None:
    tasks = tasks_pb2_grpc.TaskServiceStub(ch)
    nul = "a\x00b"
    answers = {
        # Open to anyone: refused as malformed, which says nothing about
        # whether a user exists (no username can hold a NUL).
        "Login": await outcome(
            auth.Login(auth_pb2.LoginRequest(username=nul, password="p" * 12), timeout=10)
        ),
        "GetTask": await outcome(
            tasks.GetTask(tasks_pb2.GetTaskRequest(id=nul), metadata=admin, timeout=10)
        ),
        "GetUser": await outcome(
            auth.GetUser(auth_pb2.GetUserRequest(id=nul), metadata=admin, timeout=10)
        ),
        "RevokeApiToken": await outcome(
            auth.RevokeApiToken(auth_pb2.RevokeApiTokenRequest(id=nul), metadata=admin, timeout=10)
        ),
        "ListTasks": await outcome(
            tasks.ListTasks(tasks_pb2.ListTasksRequest(type=nul), metadata=admin, timeout=10)
        ),
    }
    assert answers["Login"][0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL" in answers["Login"][1]
    unexpected = {
        name: answer
        for name, answer in answers.items()
        if answer[0] in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    }
    assert not unexpected
