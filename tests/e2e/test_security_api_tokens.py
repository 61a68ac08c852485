"""API tokens over the wire: shown once with their prefix, scoped, revocable
at once, expiring; a worker-scoped token opens WorkerService and nothing else
(every other method, enumerated from the service descriptors, answers
PERMISSION_DENIED); an api-scoped token acts as its owner.

One server for the module; each test makes its own member.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc import aio

from orchestrator.proto import (
    auth_pb2,
    health_pb2,
    health_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
    workflows_pb2,
)
from orchestrator.status import violations
from tests.e2e.conftest import Client, to_struct
from tests.support.grpc import Metadata, channel, login, wait_until
from tests.support.server import ServerProcess

CALL_TIMEOUT = 30
# Open to anyone (DESIGN §4): a token is not looked at.
OPEN = {"/orchestrator.auth.AuthService/Login", "/orchestrator.auth.AuthService/Refresh"}


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def methods_of(*modules_and_names: tuple[Any, str]) -> list[MethodDescriptor]:
    return [
        method
        for module, name in modules_and_names
        for method in module.DESCRIPTOR.services_by_name[name].methods
    ]


NOT_FOR_WORKERS = [
    m
    for m in methods_of(
        (auth_pb2, "AuthService"),
        (tasks_pb2, "TaskService"),
        (workflows_pb2, "WorkflowService"),
    )
    if path(m) not in OPEN
]


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int


async def invoke(
    ch: aio.Channel, method: MethodDescriptor, metadata: Metadata, request: Any = None
) -> Outcome:
    """Calls any unary or server-streaming method by its descriptor."""
    assert not method.client_streaming
    request_class: Any = message_factory.GetMessageClass(method.input_type)
    response_class: Any = message_factory.GetMessageClass(method.output_type)
    factory = ch.unary_stream if method.server_streaming else ch.unary_unary
    call = factory(
        path(method),
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )(request if request is not None else request_class(), metadata=metadata, timeout=10)
    responses = 0
    try:
        if method.server_streaming:
            async for _ in call:
                responses += 1
        else:
            await call
            responses = 1
    except aio.AioRpcError:
        pass
    return Outcome(await call.code(), await call.details() or "", responses)


class Worker:
    """A hand-driven WorkerService.Connect stream."""

    def __init__(self, ch: aio.Channel, metadata: Metadata) -> None:
        self.call: Any = workers_pb2_grpc.WorkerServiceStub(ch).Connect(
            metadata=metadata, timeout=60
        )

    async def hello(self, name: str, task_types: list[str]) -> workers_pb2.Welcome:
        hello = workers_pb2.Hello(name=name, task_types=task_types, slots=1)
        await self.call.write(workers_pb2.WorkerMessage(hello=hello))
        message = await self.receive()
        assert message.WhichOneof("kind") == "welcome", message
        return message.welcome

    async def receive(self, seconds: float = CALL_TIMEOUT) -> workers_pb2.ServerMessage:
        async with asyncio.timeout(seconds):
            message = await self.call.read()
        assert message is not aio.EOF, "the server ended the worker stream"
        return message  # type: ignore[no-any-return]

    async def close(self) -> None:
        async with asyncio.timeout(CALL_TIMEOUT):
            await self.call.done_writing()
            while await self.call.read() is not aio.EOF:
                pass


async def code_of(call: Awaitable[Any]) -> grpc.StatusCode:
    try:
        await call
    except aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def ch(shared_server: ServerProcess) -> AsyncIterator[aio.Channel]:
    assert shared_server.address
    async with channel(shared_server.address) as opened:
        yield opened


@pytest.fixture
async def admin(ch: aio.Channel) -> Client:
    return Client(ch, await login(ch))


@pytest.fixture
async def member(ch: aio.Channel, admin: Client) -> tuple[auth_pb2.User, Client]:
    """A fresh member, logged in on its own token."""
    password = "pw-" + secrets.token_urlsafe(12)
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(
            username=f"tok-{secrets.token_hex(4)}", password=password, role="member"
        ),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    return user, Client(ch, await login(ch, user.username, password))


async def create_token(
    client: Client, scope: str, expires_in_seconds: int = 0, name: str = "t"
) -> auth_pb2.CreateApiTokenResponse:
    return await client.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(
            name=name, scope=scope, expires_in_seconds=expires_in_seconds
        ),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )


async def whoami_code(client: Client, token: str) -> grpc.StatusCode:
    return await code_of(
        client.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bearer(token), timeout=10)
    )


# -- creation, listing ---------------------------------------------------------------


async def test_token_is_shown_once_with_its_prefix(member: tuple[auth_pb2.User, Client]) -> None:
    user, client = member
    created = await create_token(client, "api", name="deploy bot")
    assert created.token.startswith("orch_")
    assert len(created.token) >= len("orch_") + 40
    shown = created.api_token
    assert (shown.name, shown.scope, shown.owner_id) == ("deploy bot", "api", user.id)
    assert created.token.startswith(shown.prefix) and len(shown.prefix) < len(created.token) // 2
    assert not shown.HasField("revoked_at")

    listed = await client.auth.ListApiTokens(
        auth_pb2.ListApiTokensRequest(), metadata=client.metadata, timeout=CALL_TIMEOUT
    )
    assert [t.id for t in listed.api_tokens] == [shown.id]
    # Never again: no part of any later answer holds the secret.
    wire = listed.SerializeToString()
    assert created.token.encode() not in wire
    assert created.token.removeprefix("orch_").encode() not in wire


async def test_each_token_is_different(member: tuple[auth_pb2.User, Client]) -> None:
    _, client = member
    tokens = {(await create_token(client, "api")).token for _ in range(5)}
    assert len(tokens) == 5


async def test_bad_token_requests_are_refused(member: tuple[auth_pb2.User, Client]) -> None:
    _, client = member
    for scope, expires_in_seconds, field in [
        ("admin", 0, "scope"),
        ("", 0, "scope"),
        ("API", 0, "scope"),
        ("api", -1, "expires_in_seconds"),
    ]:
        with pytest.raises(aio.AioRpcError) as caught:
            await create_token(client, scope, expires_in_seconds)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, scope
        assert [v.field for v in violations(caught.value)] == [field]
    listed = await client.auth.ListApiTokens(
        auth_pb2.ListApiTokensRequest(), metadata=client.metadata, timeout=CALL_TIMEOUT
    )
    assert list(listed.api_tokens) == []


async def test_an_absurd_lifetime_is_refused_not_an_internal_error(
    member: tuple[auth_pb2.User, Client],
) -> None:
    _, client = member
    with pytest.raises(aio.AioRpcError) as caught:
        await create_token(client, "api", expires_in_seconds=2**62)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in violations(caught.value)] == ["expires_in_seconds"]


# -- scope api --------------------------------------------------------------------------


async def test_api_token_acts_as_its_owner(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client], admin: Client
) -> None:
    user, client = member
    token = (await create_token(client, "api")).token
    as_token = Client(ch, bearer(token))

    who = await as_token.auth.WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=as_token.metadata, timeout=CALL_TIMEOUT
    )
    assert (who.user.id, who.user.role, who.credential, who.scope) == (
        user.id,
        "member",
        "api_token",
        "api",
    )
    # What it creates is the owner's; it sees the owner's tasks and nobody else's.
    created = await as_token.create("echo", {"via": "api token"})
    assert created.owner_id == user.id
    own = await client.create("echo", {"via": "session"})
    someone_elses = await admin.create("echo", {"via": "admin"})
    seen = await as_token.list_ids()
    assert set(seen) == {created.id, own.id}
    assert someone_elses.id not in seen
    # A member's token is a member: no admin methods.
    denied = await code_of(
        as_token.auth.ListUsers(auth_pb2.ListUsersRequest(), metadata=as_token.metadata, timeout=10)
    )
    assert denied == grpc.StatusCode.PERMISSION_DENIED


async def test_an_admins_api_token_is_an_admin(ch: aio.Channel, admin: Client) -> None:
    token = (await create_token(admin, "api")).token
    listed = await admin.auth.ListUsers(
        auth_pb2.ListUsersRequest(), metadata=bearer(token), timeout=CALL_TIMEOUT
    )
    assert "admin" in [u.username for u in listed.users]


# -- scope worker --------------------------------------------------------------------------


def test_the_enumeration_covers_the_three_services() -> None:
    services = {m.containing_service.name for m in NOT_FOR_WORKERS}
    assert services == {"AuthService", "TaskService", "WorkflowService"}
    names = {m.name for m in NOT_FOR_WORKERS}
    assert {"WhoAmI", "CreateApiToken", "Logout", "CreateTask", "ExecuteWorkflow"} <= names
    assert not names & {"Login", "Refresh"}


async def test_worker_token_is_refused_outside_worker_service(
    ch: aio.Channel, admin: Client
) -> None:
    # An admin's worker token: even the most powerful one opens nothing else.
    token = (await create_token(admin, "worker")).token
    answers = {path(m): await invoke(ch, m, bearer(token)) for m in NOT_FOR_WORKERS}
    wrong = {
        name: outcome
        for name, outcome in answers.items()
        if (outcome.code, outcome.responses) != (grpc.StatusCode.PERMISSION_DENIED, 0)
        or "worker" not in outcome.details
    }
    assert not wrong
    assert len(answers) == len(NOT_FOR_WORKERS) > 20


async def test_worker_token_opens_worker_service(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client]
) -> None:
    user, client = member
    token = (await create_token(client, "worker")).token
    as_worker = Client(ch, bearer(token))
    worker = Worker(ch, as_worker.metadata)
    welcome = await worker.hello("scoped-worker", ["echo"])
    listed = await workers_pb2_grpc.WorkerServiceStub(ch).ListWorkers(
        workers_pb2.ListWorkersRequest(), metadata=as_worker.metadata, timeout=CALL_TIMEOUT
    )
    assert [(w.id, w.owner_id) for w in listed.workers] == [(welcome.worker_id, user.id)]
    await worker.close()


async def test_open_methods_ignore_a_worker_token(ch: aio.Channel, admin: Client) -> None:
    # Login and health are open: a worker token in the metadata changes nothing.
    token = (await create_token(admin, "worker")).token
    reply = await health_pb2_grpc.HealthServiceStub(ch).Check(
        health_pb2.CheckRequest(), metadata=bearer(token), timeout=CALL_TIMEOUT
    )
    assert reply.status == health_pb2.HEALTH_STATUS_SERVING


# -- revocation and expiry ----------------------------------------------------------------


@pytest.mark.parametrize("scope", ["api", "worker"])
async def test_revocation_takes_effect_at_once(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client], scope: str
) -> None:
    _, client = member
    created = await create_token(client, scope)
    probe = (
        workers_pb2_grpc.WorkerServiceStub(ch).ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=bearer(created.token), timeout=10
        )
        if scope == "worker"
        else client.auth.WhoAmI(
            auth_pb2.WhoAmIRequest(), metadata=bearer(created.token), timeout=10
        )
    )
    assert await code_of(probe) == grpc.StatusCode.OK

    revoked = await client.auth.RevokeApiToken(
        auth_pb2.RevokeApiTokenRequest(id=created.api_token.id),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert revoked.HasField("revoked_at")

    assert await whoami_code(client, created.token) == grpc.StatusCode.UNAUTHENTICATED
    listing = await code_of(
        workers_pb2_grpc.WorkerServiceStub(ch).ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=bearer(created.token), timeout=10
        )
    )
    assert listing == grpc.StatusCode.UNAUTHENTICATED
    connect = workers_pb2_grpc.WorkerServiceStub(ch).Connect(
        metadata=bearer(created.token), timeout=10
    )
    with pytest.raises(aio.AioRpcError) as caught:
        await connect.read()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Listed as revoked, and the owner's session is untouched.
    listed = await client.auth.ListApiTokens(
        auth_pb2.ListApiTokensRequest(), metadata=client.metadata, timeout=CALL_TIMEOUT
    )
    assert [t.HasField("revoked_at") for t in listed.api_tokens] == [True]


async def test_revocation_reaches_a_connected_worker(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client]
) -> None:
    _, client = member
    created = await create_token(client, "worker")
    worker = Worker(ch, bearer(created.token))
    task_type = f"revocation-{secrets.token_hex(3)}"
    await worker.hello("soon-revoked", [task_type])
    await client.auth.RevokeApiToken(
        auth_pb2.RevokeApiTokenRequest(id=created.api_token.id),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    task = await client.create(task_type, {"secret": "for the owner only"}, start=True)

    # The revoked credential must get no more work: its stream ends, unauthenticated,
    # before anything else arrives.
    with pytest.raises(aio.AioRpcError) as caught:
        message = await worker.receive(15)
        pytest.fail(f"a revoked worker token still received {message.WhichOneof('kind')}")
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await client.get(task.id)).status == tasks_pb2.TASK_STATUS_QUEUED
    worker.call.cancel()


async def test_an_expiring_token_stops_working_when_it_expires(
    member: tuple[auth_pb2.User, Client],
) -> None:
    _, client = member
    long_lived = await create_token(client, "api", expires_in_seconds=3600)
    created = long_lived.api_token.created_at.ToDatetime()
    expires = long_lived.api_token.expires_at.ToDatetime()
    assert (expires - created).total_seconds() == pytest.approx(3600, abs=1)
    never = await create_token(client, "api", expires_in_seconds=0)
    assert not never.api_token.HasField("expires_at")

    short = await create_token(client, "api", expires_in_seconds=1)
    started = time.monotonic()

    async def refused() -> bool:
        return await whoami_code(client, short.token) == grpc.StatusCode.UNAUTHENTICATED

    await wait_until(refused, timeout=15, interval=0.1)
    assert time.monotonic() - started < 15
    # The others are unaffected.
    assert await whoami_code(client, long_lived.token) == grpc.StatusCode.OK
    assert await whoami_code(client, never.token) == grpc.StatusCode.OK


async def test_tokens_of_a_disabled_owner_stop_and_revocation_survives_reenabling(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client], admin: Client
) -> None:
    user, client = member
    kept = await create_token(client, "api")
    revoked = await create_token(client, "worker")
    await client.auth.RevokeApiToken(
        auth_pb2.RevokeApiTokenRequest(id=revoked.api_token.id),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    await admin.auth.DisableUser(
        auth_pb2.DisableUserRequest(id=user.id), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    assert await whoami_code(client, kept.token) == grpc.StatusCode.UNAUTHENTICATED
    worker_list = await code_of(
        workers_pb2_grpc.WorkerServiceStub(ch).ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=bearer(revoked.token), timeout=10
        )
    )
    assert worker_list == grpc.StatusCode.UNAUTHENTICATED

    await admin.auth.EnableUser(
        auth_pb2.EnableUserRequest(id=user.id), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    # A revoked token stays revoked whatever happens to its owner.
    worker_list = await code_of(
        workers_pb2_grpc.WorkerServiceStub(ch).ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=bearer(revoked.token), timeout=10
        )
    )
    assert worker_list == grpc.StatusCode.UNAUTHENTICATED


async def test_worker_token_cannot_be_used_to_create_tasks_for_its_owner(
    ch: aio.Channel, member: tuple[auth_pb2.User, Client]
) -> None:
    # The typed stub, as a client program would use it, gets the same refusal.
    _, client = member
    token = (await create_token(client, "worker")).token
    with pytest.raises(aio.AioRpcError) as caught:
        await tasks_pb2_grpc.TaskServiceStub(ch).CreateTask(
            tasks_pb2.CreateTaskRequest(type="echo", input=to_struct({})),
            metadata=bearer(token),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await client.list_ids() == []
