"""orchestrator.engine.throttle.LoginThrottle on the selected backend: login
attempts counted per username and per peer before the password is checked,
over a sliding window held in the database (so replicas share it); failures
refuse with the wait, checks in flight make the next attempt wait for them,
a right password's attempt is taken back."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from orchestrator.engine.throttle import BUSY, STALE_SECONDS, Attempt, LoginThrottle
from orchestrator.errors import ResourceExhausted
from orchestrator.store import Database
from orchestrator.store.schema import login_failures

WAIT = re.compile(r"too many failed logins: try again in (\d+) seconds")
PEER = "ipv4:10.0.0.1"
# Long enough that a waiting attempt polls many times; short enough for a test.
PATIENCE = 0.5


def throttle_on(database: Database, per_user: int, per_peer: int = 100) -> LoginThrottle:
    return LoginThrottle(
        database,
        per_user=per_user,
        per_peer=per_peer,
        window_seconds=60,
        patience_seconds=PATIENCE,
    )


def wait_of(error: ResourceExhausted) -> int:
    match = WAIT.search(error.message)
    assert match, error.message
    return int(match.group(1))


async def fail(throttle: LoginThrottle, username: str, peer: str = PEER) -> None:
    await throttle.failed(await throttle.attempt(username, peer))


async def refusal(throttle: LoginThrottle, username: str, peer: str = PEER) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as caught:
        await throttle.attempt(username, peer)
    return caught.value


async def rows(database: Database) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(login_failures)) or 0)


async def age_rows(database: Database, seconds: float) -> None:
    async with database.write() as conn:
        await conn.execute(
            update(login_failures).values(created_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


@pytest.fixture
async def replica(database_url: str, database: Database) -> AsyncIterator[Database]:
    """A second connection pool on the same database, as another replica has."""
    other = Database(database_url)
    try:
        yield other
    finally:
        await other.close()


async def test_the_limit_th_failure_closes_the_door_with_the_wait(database: Database) -> None:
    throttle = throttle_on(database, per_user=3, per_peer=12)
    for _ in range(3):
        await fail(throttle, "alice")
    assert 59 <= wait_of(await refusal(throttle, "alice")) <= 60
    # A refused attempt was never checked: it is not counted.
    assert await rows(database) == 3 * 2


async def test_a_right_password_takes_its_attempt_back(database: Database) -> None:
    throttle = throttle_on(database, per_user=2)
    for _ in range(5):
        await throttle.take_back(await throttle.attempt("alice", PEER))
    await fail(throttle, "alice")
    await fail(throttle, "alice")
    wait_of(await refusal(throttle, "alice"))


async def test_the_username_limit_holds_from_any_address_and_in_any_case(
    database: Database,
) -> None:
    # Spreading guesses over many addresses does not help against one account.
    throttle = throttle_on(database, per_user=3, per_peer=12)
    for octet, name in enumerate(("ALICE", "Alice", "aLiCe")):
        await fail(throttle, name, f"ipv4:10.0.0.{octet}")
    wait_of(await refusal(throttle, "alice", "ipv4:192.168.1.1"))
    # Other users are not locked out by one user's failures.
    await fail(throttle, "bob", "ipv4:10.0.0.2")


async def test_the_peer_limit_stops_spraying_many_usernames(database: Database) -> None:
    throttle = throttle_on(database, per_user=3, per_peer=12)
    for index in range(12):
        await fail(throttle, f"user{index}")
    assert wait_of(await refusal(throttle, "a-fresh-name")) > 0
    # Another address is unaffected.
    await fail(throttle, "a-fresh-name", "ipv4:10.0.0.2")


async def test_the_door_opens_again_after_the_window(database: Database) -> None:
    window = 0.5
    throttle = LoginThrottle(database, per_user=2, per_peer=100, window_seconds=window)
    await fail(throttle, "alice")
    await fail(throttle, "alice")
    # Never "0 seconds": the message rounds the wait up.
    assert wait_of(await refusal(throttle, "alice")) == 1
    # The window is the behaviour under test, so waiting it out is the test.
    await asyncio.sleep(window + 0.05)
    await throttle.attempt("alice", PEER)


async def test_checks_in_flight_make_the_next_attempt_wait_for_their_outcome(
    database: Database,
) -> None:
    throttle = throttle_on(database, per_user=2)
    first = await throttle.attempt("alice", PEER)
    second = await throttle.attempt("alice", PEER)
    third = asyncio.create_task(throttle.attempt("alice", PEER))
    # Waiting is the behaviour under test: it has had several looks by now.
    await asyncio.sleep(PATIENCE / 2)
    assert not third.done()

    await throttle.take_back(first)  # a right password: room again

    attempt = await asyncio.wait_for(third, PATIENCE)
    await throttle.failed(second)
    await throttle.failed(attempt)
    wait_of(await refusal(throttle, "alice"))


async def test_checks_that_do_not_end_in_time_refuse_the_next_as_busy(
    database: Database,
) -> None:
    throttle = throttle_on(database, per_user=1)
    await throttle.attempt("alice", PEER)
    assert (await refusal(throttle, "alice")).message == BUSY
    # A check whose outcome never came (its replica died) is a failure.
    await age_rows(database, STALE_SECONDS + 1)
    wait_of(await refusal(throttle, "alice"))


async def test_attempts_at_once_on_two_replicas_never_pass_the_limit(
    database: Database, replica: Database
) -> None:
    limit = 5
    # Each replica has its own throttle: only the database is shared. The
    # default patience: many waiting attempts poll the database.
    throttles = [
        LoginThrottle(pool, per_user=limit, per_peer=1000, window_seconds=60)
        for pool in (database, replica)
    ]
    attempts = [
        asyncio.create_task(throttles[index % 2].attempt("alice", f"ipv4:10.0.1.{index}"))
        for index in range(40)
    ]
    admitted: list[tuple[int, Attempt]] = []
    pending = set(attempts)
    while len(admitted) < limit:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        admitted += [(attempts.index(task), task.result()) for task in done]
    assert len(admitted) == limit

    for index, attempt in admitted:
        await throttles[index % 2].failed(attempt)
    refusals = await asyncio.gather(*pending, return_exceptions=True)

    assert all(isinstance(r, ResourceExhausted) and WAIT.search(r.message) for r in refusals)
    assert len(refusals) == 40 - limit


async def test_old_attempts_are_swept_from_the_table(database: Database) -> None:
    throttle = throttle_on(database, per_user=3, per_peer=12)
    for index in range(4):
        await fail(throttle, f"user{index}")
    await age_rows(database, 120)
    # A new throttle (a restarted replica) sweeps on its first count.
    await throttle_on(database, per_user=3, per_peer=12).attempt("bob", PEER)
    assert await rows(database) == 2


async def test_names_and_addresses_of_any_length_or_bytes_are_counted(
    database: Database,
) -> None:
    throttle = throttle_on(database, per_user=1)
    for name in ("x" * 5000, "nul\x00name", "é" * 400):
        await fail(throttle, name, "unix:" + "/p" * 400)
        wait_of(await refusal(throttle, name, "unix:" + "/p" * 400))
