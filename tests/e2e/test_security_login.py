"""Brute force against Login: failed attempts throttled per username and per
address (4x the username limit) with RESOURCE_EXHAUSTED saying how long to
wait; an unknown user, a wrong password and a disabled account are refused
with the same code and words, and take about the same time.

All test clients come from 127.0.0.1, so they share one address: each test
gets its own server and counts its own failures.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc import aio

from orchestrator.engine.accounts import BAD_LOGIN
from orchestrator.proto import auth_pb2, auth_pb2_grpc
from tests.support.grpc import Metadata, channel, login
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

MAX_FAILURES = 3
PER_ADDRESS = 4 * MAX_FAILURES
WAIT = re.compile(r"try again in (\d+) seconds?")
CALL_TIMEOUT = 30


def started(database_url: str, max_failures: int) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, {"ORCHESTRATOR_LOGIN_MAX_FAILURES": str(max_failures)})
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- server log:", process.log, sep="\n")


@pytest.fixture
async def throttled(database_url: str) -> AsyncIterator[aio.Channel]:
    for server in started(database_url, MAX_FAILURES):
        assert server.address
        async with channel(server.address) as ch:
            yield ch


@pytest.fixture
async def lenient(database_url: str) -> AsyncIterator[aio.Channel]:
    # For comparing answers and times: nothing here may be throttled.
    for server in started(database_url, 1000):
        assert server.address
        async with channel(server.address) as ch:
            yield ch


async def attempt(
    stub: auth_pb2_grpc.AuthServiceStub, username: str, password: str
) -> tuple[grpc.StatusCode, str]:
    try:
        await stub.Login(
            auth_pb2.LoginRequest(username=username, password=password), timeout=CALL_TIMEOUT
        )
    except aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


REFUSED = (grpc.StatusCode.UNAUTHENTICATED, BAD_LOGIN)


def assert_throttled(answer: tuple[grpc.StatusCode, str], window: int = 60) -> int:
    code, details = answer
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, answer
    match = WAIT.search(details)
    assert match, details
    wait = int(match.group(1))
    assert 1 <= wait <= window
    return wait


async def create_member(stub: auth_pb2_grpc.AuthServiceStub, admin: Metadata) -> tuple[str, str]:
    username, password = f"m-{secrets.token_hex(4)}", "pw-" + secrets.token_urlsafe(12)
    await stub.CreateUser(
        auth_pb2.CreateUserRequest(username=username, password=password, role="member"),
        metadata=admin,
        timeout=CALL_TIMEOUT,
    )
    return username, password


async def test_failed_logins_are_throttled_per_username_then_per_address(
    throttled: aio.Channel,
) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(throttled)
    # Successful logins never count.
    admin = await login(throttled)
    member, member_password = await create_member(stub, admin)
    for _ in range(3):
        assert (await attempt(stub, member, member_password))[0] == grpc.StatusCode.OK
    failures = 0

    # Per username: the limit's worth of wrong passwords, then even the right one waits.
    for _ in range(MAX_FAILURES):
        assert await attempt(stub, ADMIN_USERNAME, "wrong-password") == REFUSED
        failures += 1
    wait = assert_throttled(await attempt(stub, ADMIN_USERNAME, ADMIN_PASSWORD))
    assert wait >= 50  # the window is 60 s and began a moment ago
    # A refused attempt is not a failure: the wait does not grow.
    assert assert_throttled(await attempt(stub, ADMIN_USERNAME, "again")) <= wait
    # The name is what counts, whatever its case.
    assert_throttled(await attempt(stub, ADMIN_USERNAME.upper(), ADMIN_PASSWORD))
    # Other accounts are not locked out, and a session already open stays open.
    assert (await attempt(stub, member, member_password))[0] == grpc.StatusCode.OK
    who = await stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=admin, timeout=CALL_TIMEOUT)
    assert who.user.username == ADMIN_USERNAME

    # An unknown name is throttled exactly like a real one: the lock reveals nothing.
    ghost = f"ghost-{secrets.token_hex(4)}"
    for _ in range(MAX_FAILURES):
        assert await attempt(stub, ghost, "whatever-password") == REFUSED
        failures += 1
    ghost_answer = await attempt(stub, ghost, "whatever-password")
    assert_throttled(ghost_answer)
    admin_answer = await attempt(stub, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert WAIT.sub("", ghost_answer[1]) == WAIT.sub("", admin_answer[1])

    # Per address: spraying fresh names stops at four times the username limit.
    while failures < PER_ADDRESS:
        assert await attempt(stub, f"spray-{failures}", "whatever-password") == REFUSED
        failures += 1
    assert_throttled(await attempt(stub, "spray-one-more", "whatever-password"))
    # Now this address waits, even with a good password.
    assert_throttled(await attempt(stub, member, member_password))


async def timed(stub: auth_pb2_grpc.AuthServiceStub, username: str, password: str) -> float:
    began = time.perf_counter()
    assert await attempt(stub, username, password) == REFUSED
    return time.perf_counter() - began


async def test_unknown_user_wrong_password_and_disabled_account_are_indistinguishable(
    lenient: aio.Channel,
) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(lenient)
    admin = await login(lenient)
    member, password = await create_member(stub, admin)
    disabled, disabled_password = await create_member(stub, admin)
    users = await stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=admin, timeout=10)
    [target] = [u for u in users.users if u.username == disabled]
    await stub.DisableUser(
        auth_pb2.DisableUserRequest(id=target.id), metadata=admin, timeout=CALL_TIMEOUT
    )

    # The same code and words...
    answers = {
        "unknown user": await attempt(stub, f"nobody-{secrets.token_hex(4)}", password),
        "wrong password": await attempt(stub, member, password + "x"),
        "right password, disabled account": await attempt(stub, disabled, disabled_password),
        "empty password": await attempt(stub, member, ""),
        "name in another case": await attempt(stub, member.upper(), password),
    }
    assert set(answers.values()) == {REFUSED}, answers

    # ...and about the same time. Both paths are warm by now (connection,
    # first hash of the process). Timing on a shared machine is noisy, so a
    # round that misses is measured again, up to three rounds: without the
    # dummy hash every round misses by far (an unknown user then costs no
    # argon2 work at all, a small fraction of the time).
    rounds: list[tuple[float, list[float], list[float]]] = []
    for _ in range(3):
        unknown: list[float] = []
        wrong: list[float] = []
        for index in range(5):  # interleaved, so a slow moment hits both sides
            unknown.append(await timed(stub, f"nobody-{secrets.token_hex(6)}", password))
            wrong.append(await timed(stub, member, f"{password}-{index}"))
        ratio = statistics.median(unknown) / statistics.median(wrong)
        rounds.append((ratio, unknown, wrong))
        if 0.5 <= ratio <= 2.0:
            return
    pytest.fail(f"unknown/wrong median ratio outside [0.5, 2] in every round: {rounds}")
