"""Control reaches every replica: a cancel, a revoked token, a disabled user
or a logout written through replica A acts on the streams held by replica B,
both on one PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from orchestrator.proto import auth_pb2
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    SERVER_ENV,
    Client,
    RawWorker,
    connect,
)
from tests.e2e.stream_helpers import bearer, ended_with, open_watch
from tests.support.grpc import channel, login
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture
def replica_b(database_url: str, orchestrator: ServerProcess) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, env={**SERVER_ENV, "ORCHESTRATOR_REPLICA_ID": "b"})
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- replica b log:", process.log, sep="\n")


@pytest.fixture
async def on_b(replica_b: ServerProcess) -> AsyncIterator[Client]:
    """The admin, logged in to replica B."""
    async with connect(replica_b) as client:
        yield client


async def worker_on_b(admin_a: Client, on_b: Client, task_type: str) -> tuple[RawWorker, str]:
    """A worker connected to replica B with a fresh token made through A;
    the token's id comes back for revoking it."""
    reply = await admin_a.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name=f"w-{task_type}", scope="worker"),
        metadata=admin_a.metadata,
        timeout=CALL_TIMEOUT,
    )
    worker = RawWorker(on_b, bearer(reply.token))
    await worker.hello(f"worker-{task_type}", [task_type], slots=4)
    return worker, reply.api_token.id


async def test_cancel_through_a_reaches_the_worker_on_b(admin: Client, on_b: Client) -> None:
    task_type = f"hold-{secrets.token_hex(3)}"
    worker, _ = await worker_on_b(admin, on_b, task_type)
    task = await admin.create(task_type, {}, start=True)
    assignment = await worker.assignment()
    assert assignment.task_id == task.id

    await admin.cancel(task.id, reason="changed my mind")

    message = await worker.receive()
    assert message.WhichOneof("kind") == "cancel", message
    assert message.cancel.task_id == task.id
    assert message.cancel.fencing_token == assignment.fencing_token
    assert message.cancel.reason == "changed my mind"
    # The slot is free again: B hands the worker the next task.
    follow_up = await admin.create(task_type, {}, start=True)
    assert (await worker.assignment()).task_id == follow_up.id


async def test_a_token_revoked_through_a_ends_its_stream_on_b_and_gets_nothing(
    admin: Client, on_b: Client
) -> None:
    task_type = f"rev-{secrets.token_hex(3)}"
    revoked, token_id = await worker_on_b(admin, on_b, task_type)
    await admin.auth.RevokeApiToken(
        auth_pb2.RevokeApiTokenRequest(id=token_id), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    # Queued after the revocation committed: the revoked worker, which has
    # four free slots, must not be handed any of it.
    tasks = [await admin.create(task_type, {"i": i}, start=True) for i in range(3)]

    assert await ended_with(revoked.call) == []
    assert await revoked.call.code() == grpc.StatusCode.UNAUTHENTICATED

    # The work was left for a worker whose credential still works.
    other, _ = await worker_on_b(admin, on_b, task_type)
    received = {(await other.assignment()).task_id for _ in tasks}
    assert received == {t.id for t in tasks}


async def _member(admin: Client) -> tuple[auth_pb2.User, str]:
    password = "pw-" + secrets.token_urlsafe(12)
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(
            username=f"ctl-{secrets.token_hex(4)}", password=password, role="member"
        ),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    return user, password


async def test_disabling_a_user_through_a_ends_their_watch_on_b(
    admin: Client, replica_b: ServerProcess
) -> None:
    user, password = await _member(admin)
    assert replica_b.address
    async with channel(replica_b.address) as ch:
        member = Client(ch, await login(ch, user.username, password))
        watch = await open_watch(member)
        await admin.auth.DisableUser(
            auth_pb2.DisableUserRequest(id=user.id), metadata=admin.metadata, timeout=CALL_TIMEOUT
        )
        await ended_with(watch)
        assert await watch.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_logout_through_a_ends_the_sessions_watch_on_b(
    admin: Client, orchestrator: ServerProcess, replica_b: ServerProcess
) -> None:
    user, password = await _member(admin)
    assert replica_b.address and orchestrator.address
    async with channel(replica_b.address) as on_b, channel(orchestrator.address) as on_a:
        metadata = await login(on_b, user.username, password)
        member = Client(on_b, metadata)
        watch = await open_watch(member)
        await Client(on_a, metadata).auth.Logout(
            auth_pb2.LogoutRequest(), metadata=metadata, timeout=CALL_TIMEOUT
        )
        await ended_with(watch)
        assert await watch.code() == grpc.StatusCode.UNAUTHENTICATED
