"""Graceful shutdown on SIGTERM (DESIGN §6): health turns NOT_SERVING,
in-flight unary calls finish, open streams end UNAVAILABLE, exit code 0."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from orchestrator.proto import auth_pb2, auth_pb2_grpc
from orchestrator.proto import health_pb2 as orchestrator_health_pb2
from orchestrator.proto import health_pb2_grpc as orchestrator_health_pb2_grpc
from tests.support.grpc import channel
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

SERVING = orchestrator_health_pb2.HEALTH_STATUS_SERVING
NOT_SERVING = orchestrator_health_pb2.HEALTH_STATUS_NOT_SERVING
SHUTDOWN_STEPS = (
    "SIGTERM received",
    "shutdown: health NOT_SERVING",
    "shutdown: gRPC server stopped",
    "shutdown: database closed",
    "shutdown complete",
)
# As many as the server takes at once (ORCHESTRATOR_LOGIN_HASH_QUEUE, 16 by default).
LOGINS = 16


async def rest_of_stream(call: Any) -> tuple[list[Any], aio.AioRpcError | None]:
    """The messages still to come on a stream, and the error it ends with."""
    messages = []
    try:
        while (message := await call.read()) is not aio.EOF:
            messages.append(message)
    except aio.AioRpcError as error:
        return messages, error
    return messages, None


def assert_logged_in_order(server: ServerProcess, steps: tuple[str, ...]) -> None:
    lines = server.lines
    positions = []
    for step in steps:
        found = [i for i, line in enumerate(lines) if step in line]
        assert found, f"{step!r} not logged:\n{server.log}"
        positions.append(found[0])
    assert positions == sorted(positions), server.log


async def test_sigterm_ends_streams_and_exits_cleanly(server: ServerProcess) -> None:
    assert server.address
    async with channel(server.address) as ch:
        watch = orchestrator_health_pb2_grpc.HealthServiceStub(ch).Watch(
            orchestrator_health_pb2.WatchRequest(), timeout=60
        )
        assert (await watch.read()).status == SERVING
        server.terminate()
        messages, error = await asyncio.wait_for(rest_of_stream(watch), timeout=30)

    assert [m.status for m in messages] == [NOT_SERVING]
    assert error is not None, "the Watch stream ended without an error"
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "server shutting down")
    assert await asyncio.to_thread(server.wait, 30) == 0
    assert_logged_in_order(server, SHUTDOWN_STEPS)
    assert "Traceback" not in server.log


async def test_sigterm_lets_in_flight_calls_finish(server: ServerProcess) -> None:
    assert server.address
    async with channel(server.address) as ch:
        watch = orchestrator_health_pb2_grpc.HealthServiceStub(ch).Watch(
            orchestrator_health_pb2.WatchRequest(), timeout=60
        )
        assert (await watch.read()).status == SERVING
        login = auth_pb2_grpc.AuthServiceStub(ch).Login
        request = auth_pb2.LoginRequest(username=ADMIN_USERNAME, password=ADMIN_PASSWORD)
        # argon2 makes each Login take tens of milliseconds: most are in flight
        # when the first answer arrives.
        logins = [asyncio.ensure_future(login(request, timeout=60)) for _ in range(LOGINS)]
        await asyncio.wait(logins, return_when=asyncio.FIRST_COMPLETED)
        in_flight = sum(not call.done() for call in logins)
        server.terminate()
        results = await asyncio.gather(*logins, return_exceptions=True)
        messages, error = await asyncio.wait_for(rest_of_stream(watch), timeout=30)

    assert in_flight > 0, "every Login finished before SIGTERM: nothing was in flight"
    assert [m.status for m in messages] == [NOT_SERVING]
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
    assert await asyncio.to_thread(server.wait, 30) == 0
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {LOGINS} Logins failed: {failed[0]!r}"
    assert all(response.access_token for response in results)  # type: ignore[union-attr]


async def test_new_calls_are_refused_once_stopped(server: ServerProcess) -> None:
    assert server.address
    server.terminate()
    assert await asyncio.to_thread(server.wait, 30) == 0
    async with channel(server.address) as ch:
        stub = orchestrator_health_pb2_grpc.HealthServiceStub(ch)
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.Check(orchestrator_health_pb2.CheckRequest(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_standard_health_watch_does_not_hold_up_shutdown(database_url: str) -> None:
    # An open grpc.health.v1 Watch (what load balancers keep open) turns
    # NOT_SERVING and then ends like any stream, long before the grace period.
    with ServerProcess(database_url, {"ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "30"}) as server:
        server.start()
        assert server.address
        async with channel(server.address) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=60
            )
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            server.terminate()
            try:
                messages, error = await asyncio.wait_for(rest_of_stream(watch), timeout=5)
            except TimeoutError:
                pytest.fail("grpc.health.v1 Watch still open 5s after SIGTERM (grace is 30s)")
        assert [m.status for m in messages] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == "server shutting down"
        assert await asyncio.to_thread(server.wait, 10) == 0


async def test_sigint_shuts_down_gracefully(server: ServerProcess) -> None:
    server.interrupt()
    assert await asyncio.to_thread(server.wait, 30) == 0
    assert_logged_in_order(server, ("SIGINT received", *SHUTDOWN_STEPS[1:]))
