"""A method that is defined in the protos but not built yet answers
UNIMPLEMENTED, naming itself, through the server's real interceptors and
accounts; never a fake success. (Every method of the running server is built
today, so this is checked on the generated base servicers.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from orchestrator.auth import AuthGate
from orchestrator.engine.accounts import Accounts
from orchestrator.proto import tasks_pb2, tasks_pb2_grpc, workers_pb2_grpc
from orchestrator.services.errors import ErrorInterceptor
from tests.integration.conftest import ADMIN_PASSWORD
from tests.support.grpc import Metadata


@pytest.fixture
async def server(accounts: Accounts) -> AsyncIterator[tuple[aio.Channel, Metadata]]:
    tokens = await accounts.login("admin", ADMIN_PASSWORD, "test")
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
