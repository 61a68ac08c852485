"""Fixtures and helpers for the end-to-end tests: a server with test-friendly
settings (per test, or shared by a module), an admin client, worker tokens,
worker processes (the demo worker, or one from tests/support/workers.py), and
hand-driven worker streams.

    async def test_x(admin, start_worker):
        worker = await start_worker("--demo", "--slots", "4")
        task = await admin.create("echo", {"a": 1})
        events = await admin.execute(task.id)

`@pytest.mark.server_env(NAME="value")` adds server environment variables.
A module whose tests leave nothing behind that another could trip on may
share one server (and the `demo_worker`) by overriding `orchestrator`:

    @pytest.fixture(scope="module")
    def orchestrator(shared_orchestrator): return shared_orchestrator
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from grpc import aio

from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)
from orchestrator.status import violations
from tests.support.database import temporary_database
from tests.support.grpc import Metadata, channel, login
from tests.support.server import ServerProcess

REPO = Path(__file__).resolve().parents[2]
# Short backoff so retried tasks do not keep a test waiting.
SERVER_ENV = {
    "ORCHESTRATOR_RETRY_BASE_SECONDS": "0.05",
    "ORCHESTRATOR_RETRY_MAX_SECONDS": "0.2",
    "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "2",
}
CONNECTED = re.compile(r"connected to \S+ as worker (\S+)")
# Long enough for a loaded CI machine, short enough to fail well within the test timeout.
STREAM_TIMEOUT = 60.0
CALL_TIMEOUT = 30.0


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    result = json_format.MessageToDict(message)
    assert isinstance(result, dict)
    return result


def event_name(value: int) -> str:
    return tasks_pb2.TaskEventType.Name(value).removeprefix("TASK_EVENT_TYPE_")


def kinds(events: list[tasks_pb2.TaskEvent]) -> list[str]:
    """Event types by short name, in order: ["QUEUED", "STARTED", ...]."""
    return [event_name(e.type) for e in events]


def fields_of(error: aio.AioRpcError) -> list[str]:
    """The field names of the violations in a failed call's rich status."""
    return [v.field for v in violations(error)]


async def read_rest(call: Any, seconds: float = STREAM_TIMEOUT) -> list[Any]:
    """Every message still to come on a server stream, until it ends OK."""
    messages: list[Any] = []
    async with asyncio.timeout(seconds):
        while (message := await call.read()) is not aio.EOF:
            messages.append(message)
    return messages


async def read_until(
    call: Any, predicate: Callable[[Any], bool], seconds: float = STREAM_TIMEOUT
) -> list[Any]:
    """Messages from a stream up to and including the first that satisfies
    `predicate`; AssertionError if the stream ends first."""
    seen: list[Any] = []
    async with asyncio.timeout(seconds):
        while True:
            message = await call.read()
            assert message is not aio.EOF, f"stream ended before the awaited message: {seen}"
            seen.append(message)
            if predicate(message):
                return seen


async def refused(call: Awaitable[Any]) -> aio.AioRpcError:
    """The error a call fails with; AssertionError if it succeeds."""
    try:
        result = await call
    except aio.AioRpcError as error:
        return error
    raise AssertionError(f"the call succeeded: {result}")


def of_type(*names: str) -> Callable[[tasks_pb2.TaskEvent], bool]:
    wanted = {tasks_pb2.TaskEventType.Value(f"TASK_EVENT_TYPE_{n}") for n in names}
    return lambda event: event.type in wanted


@dataclass
class Client:
    """One user's stubs on one channel, with that user's token on every call."""

    channel: aio.Channel
    metadata: Metadata

    def __post_init__(self) -> None:
        self.tasks = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(self.channel)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)

    async def create(
        self, type: str, input: Mapping[str, Any] | None = None, **fields: Any
    ) -> tasks_pb2.Task:
        request = tasks_pb2.CreateTaskRequest(type=type, input=to_struct(input or {}), **fields)
        return await self.tasks.CreateTask(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    async def get(self, task_id: str) -> tasks_pb2.Task:
        return await self.tasks.GetTask(
            tasks_pb2.GetTaskRequest(id=task_id), metadata=self.metadata, timeout=CALL_TIMEOUT
        )

    async def cancel(self, task_id: str, reason: str = "") -> tasks_pb2.Task:
        return await self.tasks.CancelTask(
            tasks_pb2.CancelTaskRequest(id=task_id, reason=reason),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def list(self, **fields: Any) -> tasks_pb2.ListTasksResponse:
        return await self.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(**fields), metadata=self.metadata, timeout=CALL_TIMEOUT
        )

    async def list_ids(self, **fields: Any) -> list[str]:
        """Ids of every task the caller sees (all pages), newest first."""
        ids: list[str] = []
        token = ""
        for _ in range(100):
            page = await self.list(page_size=500, page_token=token, **fields)
            ids += [t.id for t in page.tasks]
            token = page.next_page_token
            if not token:
                return ids
        raise AssertionError("ListTasks never ran out of pages")

    def execute_call(self, task_id: str) -> Any:
        return self.tasks.ExecuteTask(
            tasks_pb2.ExecuteTaskRequest(id=task_id), metadata=self.metadata, timeout=120
        )

    def watch_call(self, task_id: str, after_sequence: int = 0) -> Any:
        return self.tasks.WatchTask(
            tasks_pb2.WatchTaskRequest(id=task_id, after_sequence=after_sequence),
            metadata=self.metadata,
            timeout=120,
        )

    async def execute(self, task_id: str) -> list[tasks_pb2.TaskEvent]:
        """The events ExecuteTask streams, to the end of the execution."""
        return await read_rest(self.execute_call(task_id))

    async def watch(self, task_id: str, after_sequence: int = 0) -> list[tasks_pb2.TaskEvent]:
        """The events WatchTask streams, until the task is finished."""
        return await read_rest(self.watch_call(task_id, after_sequence))

    async def worker_token(self, name: str = "test-worker") -> str:
        reply = await self.auth.CreateApiToken(
            auth_pb2.CreateApiTokenRequest(name=name, scope="worker"),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        assert reply.token
        return reply.token


async def update(client: Client, task: tasks_pb2.Task, *paths: str) -> tasks_pb2.Task:
    """UpdateTask with `task` and an update mask of `paths`."""
    return await client.tasks.UpdateTask(
        tasks_pb2.UpdateTaskRequest(
            task=task, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
        ),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )


class RawWorker:
    """A hand-driven WorkerService.Connect stream, for protocol-level tests."""

    def __init__(self, client: Client, metadata: Metadata) -> None:
        self.call = client.workers.Connect(metadata=metadata, timeout=120)
        self.worker_id = ""

    async def hello(self, name: str, task_types: list[str], slots: int = 1) -> workers_pb2.Welcome:
        await self.send(
            workers_pb2.WorkerMessage(
                hello=workers_pb2.Hello(name=name, task_types=task_types, slots=slots)
            )
        )
        message = await self.receive()
        assert message.WhichOneof("kind") == "welcome", message
        self.worker_id = message.welcome.worker_id
        return message.welcome

    async def send(self, message: workers_pb2.WorkerMessage) -> None:
        async with asyncio.timeout(CALL_TIMEOUT):
            await self.call.write(message)

    async def receive(self, seconds: float = STREAM_TIMEOUT) -> workers_pb2.ServerMessage:
        async with asyncio.timeout(seconds):
            message = await self.call.read()
        assert message is not aio.EOF, "the server ended the worker stream"
        return message  # type: ignore[no-any-return]

    async def assignment(self) -> workers_pb2.Assignment:
        message = await self.receive()
        assert message.WhichOneof("kind") == "assignment", message
        return message.assignment

    async def close(self) -> None:
        """Half-closes the stream and reads it to its end (the server's side
        of the disconnect, re-queueing included, is done by then)."""
        async with asyncio.timeout(CALL_TIMEOUT):
            await self.call.done_writing()
            while await self.call.read() is not aio.EOF:
                pass
        assert await self.call.code() == grpc.StatusCode.OK


# -- servers ---------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "server_env(**variables): extra environment for this test's `orchestrator` server",
    )


def _marked_env(node: pytest.Item | pytest.Collector) -> dict[str, str]:
    marker = node.get_closest_marker("server_env")
    return dict(marker.kwargs) if marker else {}


@contextlib.contextmanager
def _serving(database_url: str, extra: Mapping[str, str]) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, env={**SERVER_ENV, **extra})
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- server log:", process.log, sep="\n")


@pytest.fixture
def orchestrator(request: pytest.FixtureRequest, database_url: str) -> Iterator[ServerProcess]:
    """A started server on this test's own database, with SERVER_ENV plus the
    variables of the `server_env` marker; its log is shown on failure."""
    with _serving(database_url, _marked_env(request.node)) as process:
        yield process


@pytest.fixture(scope="module")
def shared_orchestrator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server and database for a whole module (its `server_env` marker
    applies), for modules whose tests leave nothing another could trip on.
    Such a module opts in by overriding `orchestrator`:

        @pytest.fixture(scope="module")
        def orchestrator(shared_orchestrator): return shared_orchestrator
    """
    directory = tmp_path_factory.mktemp("shared-e2e")
    with (
        temporary_database(directory) as url,
        _serving(url, _marked_env(request.node)) as process,
    ):
        yield process


# -- clients ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connect(
    server: ServerProcess, username: str | None = None, password: str | None = None
) -> AsyncIterator[Client]:
    assert server.address
    async with channel(server.address) as ch:
        if username is None:
            metadata = await login(ch)
        else:
            assert password is not None
            metadata = await login(ch, username, password)
        yield Client(ch, metadata)


@pytest.fixture
async def admin(orchestrator: ServerProcess) -> AsyncIterator[Client]:
    """The bootstrap admin, logged in to `orchestrator`."""
    async with connect(orchestrator) as client:
        yield client


# -- workers ---------------------------------------------------------------------


class WorkerProcess(ServerProcess):
    """`orchestrator worker ARGS...` as a subprocess, run from the repository
    root (so `tests.support.workers:worker` imports); `worker_id` once
    connected."""

    worker_id = ""

    def __init__(
        self,
        server: ServerProcess | str,
        token: str = "",
        args: tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        """`WorkerProcess(server, token, args)`: `orchestrator worker ARGS...`
        against `server`, with `token`. ServerProcess's own form also works:
        `WorkerProcess(database_url, env={...}, args=("worker", ...), cwd=REPO)`."""
        if isinstance(server, str):
            super().__init__(server, args=args, **options)
            return
        assert server.address and token and not options
        super().__init__(
            "unused",  # a worker has no database: DATABASE_URL is removed below
            env={
                "ORCHESTRATOR_URL": server.address,
                "ORCHESTRATOR_TOKEN": token,
                "DATABASE_URL": None,
            },
            args=("worker", *args),
            cwd=REPO,
        )

    def connected(self, timeout: float = 30) -> WorkerProcess:
        """Waits for the worker's "connected" line; sets worker_id."""
        self.worker_id = self.wait_for_log(CONNECTED, timeout).group(1)
        return self

    def finish(self) -> None:
        """Stops it (SIGTERM, then SIGKILL) and prints its log for a failure report."""
        self.stop(15)
        print(f"--- worker log ({' '.join(self.args)}):", self.log, sep="\n")


WorkerFactory = Callable[..., Awaitable[WorkerProcess]]


@pytest.fixture
async def start_worker(orchestrator: ServerProcess, admin: Client) -> AsyncIterator[WorkerFactory]:
    """`await start_worker(*ARGS)` starts `orchestrator worker ARGS...` against
    `orchestrator` with a fresh worker token and returns it once connected.
    Each is stopped after the test, before the server."""
    started: list[WorkerProcess] = []

    async def start(*args: str) -> WorkerProcess:
        token = await admin.worker_token(f"worker-{len(started) + 1}")
        process = WorkerProcess(orchestrator, token, args)
        started.append(process)
        process.launch()
        return await asyncio.to_thread(process.connected)

    try:
        yield start
    finally:
        for process in reversed(started):
            await asyncio.to_thread(process.finish)


async def _worker_token(server: ServerProcess, name: str) -> str:
    async with connect(server) as client:
        return await client.worker_token(name)


@pytest.fixture(scope="module")
def demo_worker(shared_orchestrator: ServerProcess) -> Iterator[WorkerProcess]:
    """`orchestrator worker --demo --slots 10` connected to `shared_orchestrator`
    for the whole module (so the module must use that server: see above)."""
    token = asyncio.run(_worker_token(shared_orchestrator, "shared-demo-worker"))
    process = WorkerProcess(shared_orchestrator, token, ("--demo", "--slots", "10"))
    try:
        yield process.launch().connected()
    finally:
        process.finish()
