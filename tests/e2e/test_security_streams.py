"""Long-lived streams live only as long as their credential: a logout or an
expiry ends them, not just the next call."""

from __future__ import annotations

import secrets

import grpc

from orchestrator.proto import auth_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, RawWorker
from tests.e2e.stream_helpers import bearer, ended_with, open_watch


async def test_a_logout_ends_the_sessions_open_watch(admin: Client) -> None:
    watch = await open_watch(admin)
    await admin.auth.Logout(auth_pb2.LogoutRequest(), metadata=admin.metadata, timeout=10)
    await ended_with(watch)
    assert await watch.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_worker_token_that_expires_ends_its_stream(admin: Client) -> None:
    reply = await admin.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="short", scope="worker", expires_in_seconds=2),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    worker = RawWorker(admin, bearer(reply.token))
    await worker.hello("short-lived", [f"t-{secrets.token_hex(3)}"])
    # Nothing revokes it: the periodic re-check notices the expiry.
    assert await ended_with(worker.call) == []
    assert await worker.call.code() == grpc.StatusCode.UNAUTHENTICATED
