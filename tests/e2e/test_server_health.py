"""A running server answers health checks and lists its services by reflection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import orchestrator
from orchestrator.proto import health_pb2 as orchestrator_health_pb2
from orchestrator.proto import health_pb2_grpc as orchestrator_health_pb2_grpc
from tests.support.database import backend
from tests.support.grpc import channel
from tests.support.server import ServerProcess

SERVICES = (
    "orchestrator.health.HealthService",
    "orchestrator.auth.AuthService",
    "orchestrator.tasks.TaskService",
    "orchestrator.workflows.WorkflowService",
    "orchestrator.workers.WorkerService",
)


@pytest.fixture
async def client(shared_server: ServerProcess) -> AsyncIterator[aio.Channel]:
    # Read-only tests: one server for the module.
    assert shared_server.address
    async with channel(shared_server.address) as ch:
        yield ch


@pytest.mark.parametrize("service", ["", *SERVICES])
async def test_standard_health_is_serving(client: aio.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(client)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_standard_health_of_an_unknown_service(client: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(client)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_service_check(client: aio.Channel) -> None:
    stub = orchestrator_health_pb2_grpc.HealthServiceStub(client)
    response = await stub.Check(orchestrator_health_pb2.CheckRequest(), timeout=10)
    assert response.status == orchestrator_health_pb2.HEALTH_STATUS_SERVING
    assert response.version == orchestrator.__version__
    assert response.uptime_seconds >= 0
    assert response.metadata["database"] == "reachable"
    dialect = {"sqlite": "sqlite", "postgres": "postgresql"}[backend()]
    assert response.metadata["database_dialect"] == dialect
    assert response.metadata["replica_id"]


async def test_health_service_watch_starts_with_the_current_state(client: aio.Channel) -> None:
    stub = orchestrator_health_pb2_grpc.HealthServiceStub(client)
    call = stub.Watch(orchestrator_health_pb2.WatchRequest(), timeout=10)
    try:
        first = await call.read()
        assert first.status == orchestrator_health_pb2.HEALTH_STATUS_SERVING
    finally:
        call.cancel()


async def list_services(client: aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(client)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    call = stub.ServerReflectionInfo(iter([request]), timeout=10)
    responses = [response async for response in call]
    assert len(responses) == 1
    return [s.name for s in responses[0].list_services_response.service]


async def test_reflection_lists_the_services(client: aio.Channel) -> None:
    names = await list_services(client)
    assert set(SERVICES) <= set(names)
    assert "grpc.health.v1.Health" in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("symbol", SERVICES)
async def test_reflection_describes_each_service(client: aio.Channel, symbol: str) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(client)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    responses = [r async for r in stub.ServerReflectionInfo(iter([request]), timeout=10)]
    assert len(responses) == 1
    assert not responses[0].HasField("error_response"), responses[0].error_response
    files = responses[0].file_descriptor_response.file_descriptor_proto
    assert files, f"no descriptor for {symbol}"
