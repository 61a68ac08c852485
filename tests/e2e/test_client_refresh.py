"""Access tokens are refreshed without the caller noticing: before they
expire, or once when the server refuses one; one refresh however many calls
need it; and processes sharing a session file never spend a refresh token
twice (the server would take that for theft)."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from orchestrator import errors
from orchestrator.client import Client, Session, SessionFile
from orchestrator.proto import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import SERVER_ENV
from tests.support.database import temporary_database
from tests.support.grpc import channel, status_code, wait_until
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

# Generous: a loaded CI machine starts a server slowly; a healthy one in about two seconds.
STARTUP_TIMEOUT = 60

LIFETIME_SECONDS = 2


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose access tokens live two seconds."""
    with temporary_database(tmp_path_factory.mktemp("refresh-db")) as url:
        env = {**SERVER_ENV, "JWT_EXPIRATION_SECONDS": str(LIFETIME_SECONDS)}
        server = ServerProcess(url, env=env)
        try:
            server.start(STARTUP_TIMEOUT)
            assert server.address
            yield server.address
        finally:
            server.stop()
            print("--- server log:", server.log, sep="\n")


async def past_expiry(session: Session) -> None:
    await wait_until(lambda: time.time() > session.expires_at, timeout=LIFETIME_SECONDS + 5)


async def refresh_is_refused(address: str, refresh_token: str) -> bool:
    async with channel(address) as ch:
        try:
            await auth_pb2_grpc.AuthServiceStub(ch).Refresh(
                auth_pb2.RefreshRequest(refresh_token=refresh_token), timeout=10
            )
        except aio.AioRpcError as exc:
            return status_code(exc) == grpc.StatusCode.UNAUTHENTICATED
    return False


async def test_an_expired_access_token_is_refreshed_unnoticed_and_once(
    address: str, tmp_path: Path
) -> None:
    saved = SessionFile(tmp_path / "config")
    async with Client(address, session_file=saved) as client:
        first = await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        assert first.lifetime == LIFETIME_SECONDS
        await past_expiry(first)

        # Many calls at once after expiry: a second refresh of the same token
        # would be refused, so all of them succeeding means they shared one.
        answers = await asyncio.gather(*(client.whoami() for _ in range(20)))

        assert {a.user.username for a in answers} == {ADMIN_USERNAME}
        second = client.session
        assert second is not None and second.expires_at > time.time()
        assert second.access_token != first.access_token
        assert second.refresh_token != first.refresh_token
    # The refreshed session is the saved one, still for the owner's eyes only.
    assert saved.load() == second
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600
    assert await refresh_is_refused(address, first.refresh_token)  # spent by the refresh


async def test_a_refused_access_token_is_refreshed_once_and_the_call_repeated(
    address: str,
) -> None:
    async with Client(address) as login:
        real = await login.login(ADMIN_USERNAME, ADMIN_PASSWORD)
    # The client believes its token good for an hour; the server says otherwise.
    stale = Session(
        real.url, real.username, "not-a-token", real.refresh_token, time.time() + 3600, 3600
    )
    async with Client(address, session=stale) as client:
        tasks = await client.tasks.list()

        assert tasks.items == ()
        assert client.session is not None
        assert client.session.access_token not in ("not-a-token", real.access_token)


async def test_processes_sharing_a_session_file_take_turns(address: str, tmp_path: Path) -> None:
    saved = SessionFile(tmp_path / "config")
    async with Client(address, session_file=saved) as first:
        session = await first.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        # A second process, started from the same saved session.
        async with Client(address, session=saved.load(), session_file=saved) as second:
            await past_expiry(session)
            await first.whoami()  # refreshes, and saves the new session

            await second.whoami()  # finds that session instead of spending a spent token

            assert second.session == first.session == saved.load()


async def test_an_ended_session_asks_to_log_in_again(address: str) -> None:
    async with Client(address) as client:
        session = await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        async with Client(address, session=session) as other:
            await other.logout()

        with pytest.raises(errors.Unauthenticated, match="log in again"):
            await client.whoami()
