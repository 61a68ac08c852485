"""TLS and mutual TLS (ORCHESTRATOR_TLS_CERT_FILE, _KEY_FILE, _CLIENT_CA_FILE):
a TLS client that trusts the CA is served, a plaintext one is not; with a
client CA, a client without a certificate (or with one from another CA) is
refused and one with a certificate is served; the demo worker runs a task
over mutual TLS (the worker SDK reads ORCHESTRATOR_TLS_CA_FILE and
ORCHESTRATOR_TLS_CLIENT_CERT_FILE / _KEY_FILE, see orchestrator/channel.py).

Certificates come from tests/support/certs.py, made fresh for each module.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from grpc import aio

from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from tests.e2e.conftest import REPO, to_dict, to_struct
from tests.support.certs import Pki, make_pki
from tests.support.database import temporary_database
from tests.support.grpc import login
from tests.support.server import ServerProcess

pytestmark = pytest.mark.any_database

CONNECTED = re.compile(r"connected to \S+ as worker (\S+)")
CALL_TIMEOUT = 30.0
# A refused handshake fails fast; this only bounds a hang.
REFUSAL_TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_env(pki: Pki, *, mutual: bool) -> dict[str, str | None]:
    return {
        "ORCHESTRATOR_TLS_CERT_FILE": str(pki.server.cert_file),
        "ORCHESTRATOR_TLS_KEY_FILE": str(pki.server.key_file),
        "ORCHESTRATOR_TLS_CLIENT_CA_FILE": str(pki.ca.cert_file) if mutual else None,
    }


def serve(database_url: str, env: dict[str, str | None]) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, env)
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- server log:", process.log, sep="\n")


@pytest.fixture
def tls_server(database_url: str, pki: Pki) -> Iterator[ServerProcess]:
    yield from serve(database_url, tls_env(pki, mutual=False))


@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[ServerProcess]:
    # Two tests share it: one only knocks at the door, the other leaves a task behind.
    with temporary_database(tmp_path_factory.mktemp("mtls")) as database_url:
        yield from serve(database_url, tls_env(pki, mutual=True))


async def health(ch: aio.Channel, seconds: float = CALL_TIMEOUT) -> int:
    reply = await health_pb2_grpc.HealthServiceStub(ch).Check(
        health_pb2.CheckRequest(), timeout=seconds
    )
    return reply.status


async def refused(ch: aio.Channel) -> grpc.StatusCode:
    """The code of a health check that must fail at the connection."""
    with pytest.raises(aio.AioRpcError) as caught:
        await health(ch, REFUSAL_TIMEOUT)
    return caught.value.code()


@contextlib.asynccontextmanager
async def secure(
    server: ServerProcess, credentials: grpc.ChannelCredentials
) -> AsyncIterator[aio.Channel]:
    assert server.address
    ch = aio.secure_channel(server.address, credentials)
    try:
        yield ch
    finally:
        await ch.close()


@contextlib.asynccontextmanager
async def plain(server: ServerProcess) -> AsyncIterator[aio.Channel]:
    assert server.address
    ch = aio.insecure_channel(server.address)
    try:
        yield ch
    finally:
        await ch.close()


# -- TLS ---------------------------------------------------------------------------------


async def test_tls_server_serves_a_tls_client_and_refuses_plaintext(
    tls_server: ServerProcess, pki: Pki
) -> None:
    assert "tls=True" in tls_server.log
    async with secure(tls_server, pki.channel_credentials()) as ch:
        assert await health(ch) == health_pb2.HEALTH_STATUS_SERVING
        # Everything else works over it too: log in, ask who we are.
        metadata = await login(ch)
        who = await auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(
            auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=CALL_TIMEOUT
        )
        assert who.user.username == "admin"
    async with plain(tls_server) as ch:
        assert await refused(ch) == grpc.StatusCode.UNAVAILABLE
    # A client that does not trust our CA (the system's roots only) is refused too.
    async with secure(tls_server, grpc.ssl_channel_credentials()) as ch:
        assert await refused(ch) == grpc.StatusCode.UNAVAILABLE
    # Without a client CA configured, a client certificate is simply not needed.
    async with secure(tls_server, pki.channel_credentials(pki.client)) as ch:
        assert await health(ch) == health_pb2.HEALTH_STATUS_SERVING


# -- mutual TLS ------------------------------------------------------------------------------


async def test_mutual_tls_requires_a_client_certificate_from_the_ca(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    assert "tls=mutual" in mtls_server.log
    async with secure(mtls_server, pki.channel_credentials()) as ch:
        assert await refused(ch) == grpc.StatusCode.UNAVAILABLE
    async with secure(mtls_server, pki.channel_credentials(pki.rogue_client)) as ch:
        assert await refused(ch) == grpc.StatusCode.UNAVAILABLE
    async with plain(mtls_server) as ch:
        assert await refused(ch) == grpc.StatusCode.UNAVAILABLE
    async with secure(mtls_server, pki.channel_credentials(pki.client)) as ch:
        assert await health(ch) == health_pb2.HEALTH_STATUS_SERVING
        # The certificate gets a client to the door; the token is still required.
        with pytest.raises(aio.AioRpcError) as caught:
            await auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(
                auth_pb2.WhoAmIRequest(), timeout=CALL_TIMEOUT
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_demo_worker_runs_a_task_over_mutual_tls(
    mtls_server: ServerProcess, pki: Pki
) -> None:
    async with secure(mtls_server, pki.channel_credentials(pki.client)) as ch:
        metadata = await login(ch)
        token = await auth_pb2_grpc.AuthServiceStub(ch).CreateApiToken(
            auth_pb2.CreateApiTokenRequest(name="tls-worker", scope="worker"),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        assert mtls_server.address
        worker = ServerProcess(
            mtls_server.env["DATABASE_URL"],
            env={
                "ORCHESTRATOR_URL": mtls_server.address,
                "ORCHESTRATOR_TOKEN": token.token,
                "ORCHESTRATOR_TLS_CA_FILE": str(pki.ca.cert_file),
                "ORCHESTRATOR_TLS_CLIENT_CERT_FILE": str(pki.client.cert_file),
                "ORCHESTRATOR_TLS_CLIENT_KEY_FILE": str(pki.client.key_file),
            },
            args=("worker", "--demo"),
            cwd=REPO,
        )
        try:
            worker.launch()
            match = await asyncio.to_thread(worker.wait_for_log, CONNECTED, 30)
            stub = tasks_pb2_grpc.TaskServiceStub(ch)
            task = await stub.CreateTask(
                tasks_pb2.CreateTaskRequest(type="echo", input=to_struct({"over": "mTLS"})),
                metadata=metadata,
                timeout=CALL_TIMEOUT,
            )
            events = [
                event
                async for event in stub.ExecuteTask(
                    tasks_pb2.ExecuteTaskRequest(id=task.id), metadata=metadata, timeout=60
                )
            ]
            assert events[-1].status == tasks_pb2.TASK_STATUS_SUCCEEDED
            assert to_dict(events[-1].output) == {"over": "mTLS"}
            done = await stub.GetTask(
                tasks_pb2.GetTaskRequest(id=task.id), metadata=metadata, timeout=CALL_TIMEOUT
            )
            assert done.worker_id == match.group(1)
        finally:
            await asyncio.to_thread(worker.stop, 15)
            print("--- worker log:", worker.log, sep="\n")
