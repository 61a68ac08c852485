"""Refresh under concurrency. The SDK and the CLI refresh single-flight: many
calls that find the access token expired (or refused) cause one Refresh, and
processes sharing a session file take turns, so a client never races itself.
And the server's patience with a client that does race itself is the setting
ORCHESTRATOR_REFRESH_REUSE_SECONDS.

Refreshes are counted in the database: every login or refresh of a session
family adds one row to `sessions`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from orchestrator.client import Client, Session, SessionFile
from orchestrator.proto import auth_pb2, auth_pb2_grpc
from orchestrator.store import Database
from orchestrator.store.schema import sessions
from tests.e2e.conftest import SERVER_ENV
from tests.e2e.test_cli_commands import clean_env, cli
from tests.support.database import temporary_database
from tests.support.grpc import channel, wait_until
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

LIFETIME_SECONDS = 2
REUSE_SECONDS = 1
CALLS = 30
COMMANDS = 4
LOCKS = Path("/proc/locks")


@dataclass(frozen=True)
class Served:
    address: str
    database_url: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server whose access tokens live two seconds, and whose patience
    with a reused refresh token is one second."""
    with temporary_database(tmp_path_factory.mktemp("single-flight-db")) as url:
        env = {
            **SERVER_ENV,
            "JWT_EXPIRATION_SECONDS": str(LIFETIME_SECONDS),
            "ORCHESTRATOR_REFRESH_REUSE_SECONDS": str(REUSE_SECONDS),
        }
        server = ServerProcess(url, env=env)
        try:
            server.start(60)
            assert server.address
            yield Served(server.address, url)
        finally:
            server.stop()
            print("--- server log:", server.log, sep="\n")


async def family_rows(database_url: str, refresh_token: str) -> int:
    """How many times the family of the session `refresh_token` was opened
    or refreshed."""
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    database = Database(database_url)
    try:
        async with database.read() as conn:
            family = (
                select(sessions.c.family_id)
                .where(sessions.c.refresh_token_hash == digest)
                .scalar_subquery()
            )
            found = await conn.scalar(
                select(func.count()).select_from(sessions).where(sessions.c.family_id == family)
            )
    finally:
        await database.close()
    return int(found or 0)


async def past_expiry(session: Session) -> None:
    await wait_until(lambda: time.time() > session.expires_at, timeout=LIFETIME_SECONDS + 5)


async def test_calls_finding_the_access_token_expired_refresh_once(served: Served) -> None:
    async with Client(served.address) as client:
        first = await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        await past_expiry(first)

        answers = await asyncio.gather(*(client.whoami() for _ in range(CALLS)))

    assert {a.user.username for a in answers} == {ADMIN_USERNAME}
    assert await family_rows(served.database_url, first.refresh_token) == 2


async def test_calls_whose_token_is_refused_refresh_once(served: Served) -> None:
    async with Client(served.address) as login:
        real = await login.login(ADMIN_USERNAME, ADMIN_PASSWORD)
    # The client believes its token good for an hour; the server refuses it.
    stale = Session(
        real.url, real.username, "not-a-token", real.refresh_token, time.time() + 3600, 3600
    )
    async with Client(served.address, session=stale) as client:
        pages = await asyncio.gather(*(client.tasks.list() for _ in range(CALLS)))

    assert len(pages) == CALLS
    assert await family_rows(served.database_url, real.refresh_token) == 2


async def test_clients_sharing_a_session_file_refresh_once(served: Served, tmp_path: Path) -> None:
    directory = tmp_path / "config"
    async with Client(served.address, session_file=SessionFile(directory)) as first:
        session = await first.login(ADMIN_USERNAME, ADMIN_PASSWORD)
    await past_expiry(session)
    # Two clients (as two processes would be) hold the same expired session,
    # each with its own handle on the file; their calls go out together.
    clients = [
        Client(served.address, session=session, session_file=SessionFile(directory))
        for _ in range(2)
    ]
    try:
        answers = await asyncio.gather(*(c.whoami() for c in clients for _ in range(CALLS // 2)))
    finally:
        for client in clients:
            await client.close()

    assert {a.user.username for a in answers} == {ADMIN_USERNAME}
    assert await family_rows(served.database_url, session.refresh_token) == 2
    assert clients[0].session == clients[1].session == SessionFile(directory).load()


def waiting_for(lock: Path) -> int:
    """How many processes are blocked taking the flock on `lock`, as Linux
    lists them in /proc/locks ("N: -> FLOCK ADVISORY WRITE PID DEV:INODE ...")."""
    inode = lock.stat().st_ino
    return sum(
        1
        for line in LOCKS.read_text().splitlines()
        if " -> " in line and line.split()[-3].endswith(f":{inode}")
    )


@pytest.mark.skipif(not LOCKS.exists(), reason="needs Linux's /proc/locks")
async def test_cli_commands_run_together_refresh_once(served: Served, tmp_path: Path) -> None:
    saved = SessionFile(tmp_path / "config")
    async with Client(served.address, session_file=saved) as first:
        session = await first.login(ADMIN_USERNAME, ADMIN_PASSWORD)
    await past_expiry(session)
    env = clean_env(
        {"ORCHESTRATOR_URL": served.address, "ORCHESTRATOR_CONFIG_DIR": str(saved.directory)}
    )

    # Holding the session's lock until every command has read the expired
    # session and waits to refresh it makes sure they all race for it.
    async with saved.exclusive():
        commands = [
            asyncio.create_task(asyncio.to_thread(cli, "whoami", "-o", "json", env=env))
            for _ in range(COMMANDS)
        ]
        await wait_until(lambda: waiting_for(saved.lock_path) == COMMANDS, timeout=60)
    results = await asyncio.gather(*commands)

    assert [r.code for r in results] == [0] * COMMANDS, [r.stderr for r in results]
    assert {r.json()["user"]["username"] for r in results} == {ADMIN_USERNAME}
    assert await family_rows(served.database_url, session.refresh_token) == 2


async def refresh(stub: auth_pb2_grpc.AuthServiceStub, token: str) -> auth_pb2.LoginResponse:
    return await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=10)


async def refused(stub: auth_pb2_grpc.AuthServiceStub, token: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await refresh(stub, token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_reuse_within_the_setting_is_a_race_and_after_it_a_theft(served: Served) -> None:
    async with channel(served.address) as ch:
        stub = auth_pb2_grpc.AuthServiceStub(ch)
        login = await stub.Login(
            auth_pb2.LoginRequest(username=ADMIN_USERNAME, password=ADMIN_PASSWORD), timeout=10
        )
        spent = login.refresh_token
        rotated_at = time.monotonic()
        second = await refresh(stub, spent)

        # At once: a client racing itself. Refused, and the family lives on.
        await refused(stub, spent)
        assert time.monotonic() - rotated_at < REUSE_SECONDS, "too slow to test the race"
        third = await refresh(stub, second.refresh_token)

        # Past the setting (1 s here; 5 s by default): a stolen token. The
        # whole family ends, the newest token with it. The interval is the
        # behaviour under test, so waiting it out is the test.
        await asyncio.sleep(REUSE_SECONDS + 0.2)
        await refused(stub, spent)
        await refused(stub, third.refresh_token)
