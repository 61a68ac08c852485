"""Start-up (DESIGN §6): ordered steps, the chosen port, a busy port, a restart."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc import aio

from orchestrator.proto import auth_pb2, auth_pb2_grpc
from orchestrator.proto import health_pb2 as orchestrator_health_pb2
from orchestrator.proto import health_pb2_grpc as orchestrator_health_pb2_grpc
from orchestrator.store import head_revision
from tests.support.grpc import channel, login
from tests.support.server import LISTENING, ServerProcess

START_STEPS = (
    "opening database",
    f"database migrated revision={head_revision()}",
    "bootstrap admin created username=admin",
    "listening on 127.0.0.1:",
    "health SERVING",
)


async def is_serving(address: str) -> bool:
    async with channel(address) as ch:
        stub = orchestrator_health_pb2_grpc.HealthServiceStub(ch)
        response = await stub.Check(orchestrator_health_pb2.CheckRequest(), timeout=10)
    return response.status == orchestrator_health_pb2.HEALTH_STATUS_SERVING


def step_positions(lines: list[str], steps: tuple[str, ...]) -> list[int]:
    positions = []
    for step in steps:
        found = [i for i, line in enumerate(lines) if step in line]
        assert found, f"{step!r} not logged"
        positions.append(found[0])
    return positions


async def test_start_up_steps_are_logged_in_order(server: ServerProcess) -> None:
    positions = step_positions(server.lines, START_STEPS)
    assert positions == sorted(positions), server.log


async def test_port_zero_logs_the_chosen_port(server: ServerProcess) -> None:
    ports = [int(m.group(1)) for line in server.lines if (m := LISTENING.search(line))]
    assert ports == [server.port]
    assert server.port is not None and 0 < server.port < 65536
    assert server.address and await is_serving(server.address)


@pytest.mark.parametrize("command", ["serve", "dev"])
async def test_second_server_on_the_same_port_fails_cleanly(
    server: ServerProcess, tmp_path: Path, command: str
) -> None:
    """One line naming the port and its variable, exit 2, and the database
    never touched: a fresh SQLite path is not even created."""
    busy = str(server.port)
    fresh = tmp_path / "never-created.db"
    env = {"ORCHESTRATOR_PORT": busy, "ORCHESTRATOR_HTTP_PORT": "0" if command == "dev" else None}
    with ServerProcess(f"sqlite:{fresh}", env, args=(command,)) as second:
        second.launch()
        assert second.wait(60) == 2
    assert "Traceback" not in second.log
    refusal = [line for line in second.lines if line.startswith("orchestrator: ")]
    assert refusal == [
        f"orchestrator: cannot listen on 127.0.0.1:{busy} (ORCHESTRATOR_PORT): "
        "Address already in use"
    ], second.log
    assert "opening database" not in second.log
    assert not fresh.exists()
    assert server.address and await is_serving(server.address)  # the first one is unharmed


async def test_restart_keeps_accounts_and_tokens(database_url: str) -> None:
    with ServerProcess(database_url) as first:
        first.start()
        assert first.address
        async with channel(first.address) as ch:
            metadata = await login(ch)
        first.terminate()
        assert first.wait(30) == 0

    with ServerProcess(database_url) as second:
        second.start()
        assert "bootstrap admin present username=admin" in second.log
        assert f"database migrated revision={head_revision()}" in second.log
        assert second.address
        async with channel(second.address) as ch:
            # The server keeps no state but the database: the old token still works.
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            who = await stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10)
            assert who.user.username == "admin"
            assert await login(ch)


async def test_other_secret_refuses_old_tokens(database_url: str) -> None:
    with ServerProcess(database_url) as first:
        first.start()
        assert first.address
        async with channel(first.address) as ch:
            metadata = await login(ch)
    with ServerProcess(database_url, {"JWT_SECRET": "a-different-secret-" + "q" * 21}) as second:
        second.start()
        assert second.address
        async with channel(second.address) as ch:
            stub = auth_pb2_grpc.AuthServiceStub(ch)
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
