"""Login under load: an attempt is counted before its password is checked, so
a burst of wrong passwords gets at most the limit's worth of checks; at most
ORCHESTRATOR_LOGIN_HASH_QUEUE logins are in progress at once and the next is
refused at once, so a flood delays a right password by a bounded time; on
PostgreSQL the counts are shared by the replicas.

Every answer UNAUTHENTICATED ("invalid username or password") stands for one
password the server checked (it has nothing else to answer from), so counting
those answers counts the server's argon2 work.

All test clients come from 127.0.0.1 and so share one address (whose limit is
four times the username limit): each test has its own server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from orchestrator.auth.passwords import hash_password, verify_password
from orchestrator.proto import auth_pb2_grpc
from tests.e2e.conftest import SERVER_ENV, Client
from tests.e2e.test_security_login import REFUSED, attempt, create_member
from tests.support.grpc import channel
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

LIMIT = 5
BUSY = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many logins in progress: try again shortly")
THROTTLED = "too many failed logins: try again in"


def measured_hash_seconds() -> float:
    """How long one password check takes on this machine, as the server
    does it (same parameters), measured here."""
    stored = hash_password("a-password-to-check")
    times = []
    for index in range(3):
        began = time.perf_counter()
        verify_password(stored, f"wrong-{index}")
        times.append(time.perf_counter() - began)
    return statistics.median(times)


@pytest.mark.server_env(ORCHESTRATOR_LOGIN_MAX_FAILURES=str(LIMIT))
async def test_a_burst_of_wrong_passwords_gets_the_limits_worth_of_checks(
    orchestrator: ServerProcess, admin: Client
) -> None:
    member, member_password = await create_member(admin.auth, admin.metadata)

    answers = await asyncio.gather(
        *(attempt(admin.auth, ADMIN_USERNAME, f"wrong-{index}") for index in range(60))
    )

    # Before the fix every one of the 60 was checked (and answered so).
    kinds = Counter(code for code, _ in answers)
    assert kinds[grpc.StatusCode.UNAUTHENTICATED] == LIMIT, answers
    assert kinds[grpc.StatusCode.RESOURCE_EXHAUSTED] == 60 - LIMIT, answers
    assert all(a == REFUSED for a in answers if a[0] == grpc.StatusCode.UNAUTHENTICATED)
    # The account is now locked for the window, the right password included...
    code, details = await attempt(admin.auth, ADMIN_USERNAME, ADMIN_PASSWORD)
    assert (code, details[: len(THROTTLED)]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, THROTTLED)
    # ...and nobody else is: the refused attempts never counted against the address.
    assert (await attempt(admin.auth, member, member_password))[0] == grpc.StatusCode.OK


@pytest.mark.server_env(ORCHESTRATOR_LOGIN_MAX_FAILURES=str(LIMIT))
async def test_more_right_passwords_at_once_than_the_limit_all_get_in(
    orchestrator: ServerProcess, admin: Client
) -> None:
    # Checks in flight count against the limit, so the ones past it wait
    # for those to end instead of being refused.
    answers = await asyncio.gather(
        *(attempt(admin.auth, ADMIN_USERNAME, ADMIN_PASSWORD) for _ in range(3 * LIMIT))
    )

    assert [code for code, _ in answers] == [grpc.StatusCode.OK] * (3 * LIMIT), answers


QUEUE = 4
FLOOD = 400
# What a login let in may wait (QUEUE checks ahead of it, one hashing thread),
# plus the one the client tried while the queue was full, with room for a
# loaded machine (SLACK) and for gRPC carrying the flood (OVERHEAD).
SLACK = 4
OVERHEAD_SECONDS = 1.5


@pytest.mark.server_env(
    ORCHESTRATOR_LOGIN_MAX_FAILURES="10000", ORCHESTRATOR_LOGIN_HASH_QUEUE=str(QUEUE)
)
async def test_a_flood_of_wrong_passwords_delays_a_right_one_a_bounded_time(
    orchestrator: ServerProcess, admin: Client
) -> None:
    member, member_password = await create_member(admin.auth, admin.metadata)
    hash_seconds = measured_hash_seconds()
    bound = (QUEUE + 2) * hash_seconds * SLACK + OVERHEAD_SECONDS
    # Else the test could not tell a bounded queue from none.
    assert FLOOD * hash_seconds > 2 * bound, (hash_seconds, bound)

    flood = [
        asyncio.create_task(attempt(admin.auth, ADMIN_USERNAME, f"wrong-{index}"))
        for index in range(FLOOD)
    ]
    # The first answer: the queue is full (or, without one, the first check is done).
    await asyncio.wait(flood, return_when=asyncio.FIRST_COMPLETED)
    began = time.perf_counter()
    tries = 0
    while True:
        tries += 1
        answer = await attempt(admin.auth, member, member_password)
        if answer[0] == grpc.StatusCode.OK:
            break
        assert answer == BUSY
        await asyncio.sleep(hash_seconds)  # the client's back-off: one check's time
    waited = time.perf_counter() - began
    answers = await asyncio.gather(*flood)

    assert waited <= bound, f"the right password waited {waited:.2f}s ({tries} tries)"
    kinds = Counter(answers)
    assert set(kinds) <= {REFUSED, BUSY}, kinds
    # Without a bounded queue every wrong password is checked, in turn.
    assert kinds[BUSY] > FLOOD // 2, kinds
    print(f"hash {hash_seconds * 1000:.0f} ms; waited {waited:.2f}s in {tries} tries; {kinds}")


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on one database (the first runs the migrations)."""
    env = {**SERVER_ENV, "ORCHESTRATOR_LOGIN_MAX_FAILURES": "3"}
    first = ServerProcess(database_url, env={**env, "ORCHESTRATOR_REPLICA_ID": "a"})
    second = ServerProcess(database_url, env={**env, "ORCHESTRATOR_REPLICA_ID": "b"})
    try:
        yield first.start(), second.start()
    finally:
        for name, process in (("a", first), ("b", second)):
            process.stop()
            print(f"--- replica {name} log:", process.log, sep="\n")


@pytest.mark.postgres
async def test_failures_through_one_replica_throttle_logins_through_the_other(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = replicas
    assert first.address and second.address
    async with channel(first.address) as a, channel(second.address) as b:
        stubs = (auth_pb2_grpc.AuthServiceStub(a), auth_pb2_grpc.AuthServiceStub(b))

        for index in range(3):
            assert await attempt(stubs[0], ADMIN_USERNAME, f"wrong-{index}") == REFUSED
        code, details = await attempt(stubs[1], ADMIN_USERNAME, ADMIN_PASSWORD)
        assert (code, details[: len(THROTTLED)]) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            THROTTLED,
        )

        # At once through both: the count taken on one replica before its
        # check is seen by the other's.
        answers = await asyncio.gather(
            *(attempt(stubs[index % 2], "someone-else", f"wrong-{index}") for index in range(30))
        )
        kinds = Counter(code for code, _ in answers)
        assert kinds[grpc.StatusCode.UNAUTHENTICATED] == 3, answers
        assert kinds[grpc.StatusCode.RESOURCE_EXHAUSTED] == 27, answers
