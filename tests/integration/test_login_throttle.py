"""orchestrator.engine.throttle.LoginThrottle on the selected backend: login
attempts counted per username and per peer before the password is checked,
over a sliding window held in the database (so replicas share it), with the
wait in the refusal; a right password's attempt is taken back."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from orchestrator.engine.throttle import Attempt, LoginThrottle
from orchestrator.errors import ResourceExhausted
from orchestrator.store import Database
from orchestrator.store.schema import login_failures

WAIT = re.compile(r"try again in (\d+) seconds")
PEER = "ipv4:10.0.0.1"


def wait_of(error: ResourceExhausted) -> int:
    match = WAIT.search(error.message)
    assert match, error.message
    return int(match.group(1))


async def count(
    database: Database, throttle: LoginThrottle, username: str, peer: str = PEER
) -> Attempt:
    async with database.write() as conn:
        return await throttle.count(conn, username, peer)


async def refusal(
    database: Database, throttle: LoginThrottle, username: str, peer: str = PEER
) -> ResourceExhausted:
    with pytest.raises(ResourceExhausted) as caught:
        await count(database, throttle, username, peer)
    return caught.value


async def rows(database: Database) -> int:
    async with database.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(login_failures)) or 0)


@pytest.fixture
async def replica(database_url: str, database: Database) -> AsyncIterator[Database]:
    """A second connection pool on the same database, as another replica has."""
    other = Database(database_url)
    try:
        yield other
    finally:
        await other.close()


async def test_the_limit_th_attempt_closes_the_door_with_the_wait(database: Database) -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for _ in range(3):
        await count(database, throttle, "alice")
    assert 59 <= wait_of(await refusal(database, throttle, "alice")) <= 60
    # A refused attempt was never checked: it is not counted.
    assert await rows(database) == 3 * 2


async def test_a_right_password_takes_its_attempt_back(database: Database) -> None:
    throttle = LoginThrottle(per_user=2, per_peer=100, window_seconds=60)
    for _ in range(5):
        attempt = await count(database, throttle, "alice")
        async with database.write() as conn:
            await throttle.take_back(conn, attempt)
    await count(database, throttle, "alice")
    await count(database, throttle, "alice")
    await refusal(database, throttle, "alice")


async def test_the_username_limit_holds_from_any_address_and_in_any_case(
    database: Database,
) -> None:
    # Spreading guesses over many addresses does not help against one account.
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for octet, name in enumerate(("ALICE", "Alice", "aLiCe")):
        await count(database, throttle, name, f"ipv4:10.0.0.{octet}")
    await refusal(database, throttle, "alice", "ipv4:192.168.1.1")
    # Other users are not locked out by one user's failures.
    await count(database, throttle, "bob", "ipv4:10.0.0.2")


async def test_the_peer_limit_stops_spraying_many_usernames(database: Database) -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for index in range(12):
        await count(database, throttle, f"user{index}")
    assert wait_of(await refusal(database, throttle, "a-fresh-name")) > 0
    # Another address is unaffected.
    await count(database, throttle, "a-fresh-name", "ipv4:10.0.0.2")


async def test_the_door_opens_again_after_the_window(database: Database) -> None:
    window = 0.5
    throttle = LoginThrottle(per_user=2, per_peer=100, window_seconds=window)
    await count(database, throttle, "alice")
    await count(database, throttle, "alice")
    # Never "0 seconds": the message rounds the wait up.
    assert wait_of(await refusal(database, throttle, "alice")) == 1
    # The window is the behaviour under test, so waiting it out is the test.
    await asyncio.sleep(window + 0.05)
    await count(database, throttle, "alice")


async def test_attempts_at_once_on_two_replicas_never_pass_the_limit(
    database: Database, replica: Database
) -> None:
    limit = 5
    # Each replica has its own throttle object: only the database is shared.
    throttles = [LoginThrottle(per_user=limit, per_peer=1000, window_seconds=60) for _ in "ab"]
    pools = [database, replica]

    async def one(index: int) -> bool:
        try:
            await count(pools[index % 2], throttles[index % 2], "alice", f"ipv4:10.0.1.{index}")
        except ResourceExhausted:
            return False
        return True

    passed = await asyncio.gather(*(one(index) for index in range(40)))

    assert sum(passed) == limit
    await refusal(replica, throttles[1], "alice", "ipv4:10.0.2.1")


async def test_old_attempts_are_swept_from_the_table(database: Database) -> None:
    throttle = LoginThrottle(per_user=3, per_peer=12, window_seconds=60)
    for index in range(4):
        await count(database, throttle, f"user{index}")
    async with database.write() as conn:
        await conn.execute(
            update(login_failures).values(created_at=datetime.now(UTC) - timedelta(minutes=2))
        )
    # A new throttle (a restarted replica) sweeps on its first count.
    await count(database, LoginThrottle(per_user=3, per_peer=12, window_seconds=60), "bob")
    assert await rows(database) == 2


async def test_names_and_addresses_of_any_length_or_bytes_are_counted(
    database: Database,
) -> None:
    throttle = LoginThrottle(per_user=1, per_peer=100, window_seconds=60)
    for name in ("x" * 5000, "nul\x00name", "é" * 400):
        await count(database, throttle, name, "unix:" + "/p" * 400)
        await refusal(database, throttle, name, "unix:" + "/p" * 400)
