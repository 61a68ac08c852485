"""The auth gate: every protected method refuses a call without a valid
bearer token; Login opens the gate (DESIGN §4)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc import aio

from orchestrator.auth.tokens import JwtManager
from orchestrator.engine.accounts import BAD_LOGIN
from orchestrator.errors import Unauthenticated
from orchestrator.proto import auth_pb2, auth_pb2_grpc, tasks_pb2, workers_pb2, workflows_pb2
from tests.support.grpc import Metadata, channel, login
from tests.support.server import JWT_SECRET, ServerProcess

pytestmark = pytest.mark.any_database

OPEN_AUTH_METHODS = {"Login", "Refresh"}
REFUSED = Unauthenticated().message


def protected_methods() -> list[MethodDescriptor]:
    """Every method of the protected services, from the generated descriptors."""
    methods: list[MethodDescriptor] = []
    for module, name in (
        (tasks_pb2, "TaskService"),
        (workflows_pb2, "WorkflowService"),
        (workers_pb2, "WorkerService"),
        (auth_pb2, "AuthService"),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        methods += [
            m
            for m in service.methods
            if not (name == "AuthService" and m.name in OPEN_AUTH_METHODS)
        ]
    return methods


PROTECTED = protected_methods()


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int


async def invoke(
    ch: aio.Channel, method: MethodDescriptor, metadata: Metadata | None, deadline: float = 30
) -> Outcome:
    """Calls `method` in its own streaming shape, with an empty request (none
    at all for a client stream)."""
    request_class: Any = message_factory.GetMessageClass(method.input_type)
    response_class: Any = message_factory.GetMessageClass(method.output_type)
    shape = {
        (False, False): ch.unary_unary,
        (False, True): ch.unary_stream,
        (True, False): ch.stream_unary,
        (True, True): ch.stream_stream,
    }[(method.client_streaming, method.server_streaming)]
    multicallable = shape(
        path(method),
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    if method.client_streaming:
        # Nothing is written: the gate answers before any request message,
        # and a write racing the server's early status makes grpcio's aio
        # client report INTERNAL "Internal error from Core" instead of the
        # server's status (grpc/grpc#36066), a client-side artefact.
        call = multicallable(metadata=metadata, timeout=deadline)
    else:
        call = multicallable(request_class(), metadata=metadata, timeout=deadline)
    responses = 0
    if method.server_streaming:
        try:
            async for _ in call:
                responses += 1
        except aio.AioRpcError:
            pass
    else:
        try:
            await call
            responses = 1
        except aio.AioRpcError:
            pass
    return Outcome(await call.code(), await call.details() or "", responses)


@pytest.fixture
async def client(shared_server: ServerProcess) -> AsyncIterator[aio.Channel]:
    # The gate tests change nothing on the server: one for the module.
    assert shared_server.address
    async with channel(shared_server.address) as ch:
        yield ch


def test_enumeration_covers_every_shape() -> None:
    names = {path(m) for m in PROTECTED}
    assert "/orchestrator.auth.AuthService/WhoAmI" in names
    assert "/orchestrator.auth.AuthService/Login" not in names
    assert "/orchestrator.tasks.TaskService/CreateTask" in names
    shapes = {(m.client_streaming, m.server_streaming) for m in PROTECTED}
    assert {(False, False), (False, True), (True, True)} <= shapes


@pytest.mark.parametrize("method", PROTECTED, ids=path)
async def test_token_less_call_is_refused(client: aio.Channel, method: MethodDescriptor) -> None:
    outcome = await invoke(client, method, metadata=None)
    assert (outcome.code, outcome.details, outcome.responses) == (
        grpc.StatusCode.UNAUTHENTICATED,
        REFUSED,
        0,
    )


def _expired_token() -> str:
    long_ago = time.time() - 7200
    return JwtManager(JWT_SECRET, 60).issue(user_id="u", role="admin", session_id="s", now=long_ago)


def _foreign_token() -> str:
    return JwtManager("not-the-server-secret-" + "z" * 20, 60).issue(
        user_id="u", role="admin", session_id="s"
    )


BAD_HEADERS: dict[str, Metadata] = {
    "garbage token": (("authorization", "Bearer garbage"),),
    "basic scheme": (("authorization", "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQtMQ=="),),
    "no scheme": (("authorization", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"),),
    "bearer without token": (("authorization", "Bearer "),),
    "bearer alone": (("authorization", "Bearer"),),
    "empty value": (("authorization", ""),),
    "expired token": (("authorization", f"Bearer {_expired_token()}"),),
    "token of another server": (("authorization", f"Bearer {_foreign_token()}"),),
    "token in another header": (("x-authorization", f"Bearer {_foreign_token()}"),),
}


@pytest.mark.parametrize("header", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
@pytest.mark.parametrize(
    "method", [m for m in PROTECTED if m.name in ("WhoAmI", "GetTask", "WatchTask")], ids=path
)
async def test_bad_credentials_are_refused(
    client: aio.Channel, method: MethodDescriptor, header: Metadata
) -> None:
    outcome = await invoke(client, method, metadata=header)
    assert (outcome.code, outcome.details) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)


def _oversized(kilobytes: int) -> Metadata:
    return (("authorization", "Bearer " + "a" * kilobytes * 1024),)


WHO_AM_I = next(m for m in PROTECTED if m.name == "WhoAmI")


@pytest.mark.parametrize("kilobytes", [10, 40, 100])
async def test_oversized_header_is_never_internal(client: aio.Channel, kilobytes: int) -> None:
    for _ in range(10):
        outcome = await invoke(client, WHO_AM_I, metadata=_oversized(kilobytes))
        # Past the server's metadata limits the transport refuses before the gate.
        assert outcome.code in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ), outcome


async def test_ten_kilobyte_header_is_refused_by_the_gate(client: aio.Channel) -> None:
    # Repeated: between gRPC's soft and hard metadata limits the transport
    # refuses at random, so one pass would prove little.
    for _ in range(30):
        outcome = await invoke(client, WHO_AM_I, metadata=_oversized(10))
        assert (outcome.code, outcome.details) == (grpc.StatusCode.UNAUTHENTICATED, REFUSED)


async def test_two_authorization_headers_are_refused(client: aio.Channel) -> None:
    good = await login(client)
    twice = (*good, ("authorization", "Bearer garbage"))
    outcome = await invoke(client, PROTECTED[0], metadata=twice)
    assert outcome.code == grpc.StatusCode.UNAUTHENTICATED


async def test_login_opens_the_gate(client: aio.Channel) -> None:
    response = await auth_pb2_grpc.AuthServiceStub(client).Login(
        auth_pb2.LoginRequest(username="admin", password="admin-password-1"), timeout=30
    )
    assert response.access_token and response.refresh_token
    assert response.expires_in == 3600
    assert response.user.username == "admin"
    metadata = (("authorization", f"Bearer {response.access_token}"),)
    who = await auth_pb2_grpc.AuthServiceStub(client).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10
    )
    assert (who.user.username, who.user.role, who.credential) == ("admin", "admin", "session")


async def test_scheme_is_case_insensitive(client: aio.Channel) -> None:
    token = (await login(client))[0][1].removeprefix("Bearer ")
    who = await auth_pb2_grpc.AuthServiceStub(client).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=(("authorization", f"bearer {token}"),), timeout=10
    )
    assert who.user.username == "admin"


@pytest.mark.parametrize("method", PROTECTED, ids=path)
async def test_token_passes_the_gate(client: aio.Channel, method: MethodDescriptor) -> None:
    metadata = await login(client)
    # A method may wait for more (a stream that follows): the deadline ends it.
    outcome = await invoke(client, method, metadata, deadline=3)
    assert outcome.code not in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    ), outcome
    if outcome.code == grpc.StatusCode.UNIMPLEMENTED:
        # Not built yet: says so, and sends nothing that looks like an answer.
        assert outcome.details == f"{path(method)} is not implemented yet"
        assert outcome.responses == 0


@pytest.mark.parametrize(
    ("username", "password"),
    [("admin", "wrong-password"), ("nobody", "admin-password-1"), ("", ""), ("admin", "")],
)
async def test_bad_login_is_refused(client: aio.Channel, username: str, password: str) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(client)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == BAD_LOGIN


async def test_refresh_is_open_and_rotates(client: aio.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(client)
    first = await stub.Login(
        auth_pb2.LoginRequest(username="admin", password="admin-password-1"), timeout=30
    )
    second = await stub.Refresh(auth_pb2.RefreshRequest(refresh_token=first.refresh_token))
    assert second.access_token and second.refresh_token != first.refresh_token
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.Refresh(auth_pb2.RefreshRequest(refresh_token="not-a-refresh-token"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
