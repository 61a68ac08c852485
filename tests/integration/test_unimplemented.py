"""A method that is defined in the protos but not built yet answers
UNIMPLEMENTED, naming itself, through the server's real interceptors and
accounts; never a fake success. (Every method of the running server is built
today, so this is checked on the generated base servicers.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from orchestrator.auth import AuthGate, JwtManager
from orchestrator.auth.passwords import LoginQueue
from orchestrator.engine.accounts import Accounts
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.throttle import LoginThrottle
from orchestrator.proto import tasks_pb2, tasks_pb2_grpc, workers_pb2_grpc
from orchestrator.services.errors import ErrorInterceptor
from orchestrator.store import Database
from tests.support.grpc import Metadata

SECRET = "unimplemented-test-secret-" + "u" * 20


@pytest.fixture
async def server(database: Database) -> AsyncIterator[tuple[aio.Channel, Metadata]]:
    throttle = LoginThrottle(database, per_user=1000, per_peer=1000, window_seconds=60)
    accounts = Accounts(
        database,
        JwtManager(SECRET, 900),
        3600,
        throttle,
        CredentialWatch(database, "test"),
        login_queue=LoginQueue(100),
        refresh_reuse_seconds=5,
    )
    await accounts.ensure_admin("admin", "admin-password-1")
    tokens = await accounts.login("admin", "admin-password-1", "test")
    server = aio.server(interceptors=[ErrorInterceptor(), AuthGate(accounts.authenticate)])
    tasks_pb2_grpc.add_TaskServiceServicer_to_server(tasks_pb2_grpc.TaskServiceServicer(), server)
    workers_pb2_grpc.add_WorkerServiceServicer_to_server(
        workers_pb2_grpc.WorkerServiceServicer(), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, (("authorization", f"Bearer {tokens.access_token}"),)
    finally:
        await server.stop(None)


async def test_unary_method_not_built(server: tuple[aio.Channel, Metadata]) -> None:
    channel, metadata = server
    stub = tasks_pb2_grpc.TaskServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetTask(tasks_pb2.GetTaskRequest(id="x"), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    method = "/orchestrator.tasks.TaskService/GetTask"
    assert caught.value.details() == f"{method} is not implemented yet"


async def test_stream_method_not_built(server: tuple[aio.Channel, Metadata]) -> None:
    channel, metadata = server
    call = tasks_pb2_grpc.TaskServiceStub(channel).WatchTask(
        tasks_pb2.WatchTaskRequest(id="x"), metadata=metadata, timeout=10
    )
    received = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for event in call:
            received.append(event)
    assert received == []
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "WatchTask is not implemented yet" in (caught.value.details() or "")


async def test_bidi_method_not_built(server: tuple[aio.Channel, Metadata]) -> None:
    channel, metadata = server
    call = workers_pb2_grpc.WorkerServiceStub(channel).Connect(metadata=metadata, timeout=10)
    assert await call.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Connect is not implemented yet" in (await call.details() or "")


async def test_the_gate_still_comes_first(server: tuple[aio.Channel, Metadata]) -> None:
    channel, _ = server
    stub = tasks_pb2_grpc.TaskServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetTask(tasks_pb2.GetTaskRequest(id="x"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
