"""The benchmark's one client: a grpc.aio channel to the server under test,
and the calls W1 makes through it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from google.protobuf import struct_pb2
from grpc import aio

from bench._procs import log
from orchestrator import client as sdk
from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)

RPC_TIMEOUT = 30.0
LIST_PAGE_SIZE = 500  # the server's maximum page
UNFINISHED = (tasks_pb2.TASK_STATUS_QUEUED, tasks_pb2.TASK_STATUS_RUNNING)
Metadata = tuple[tuple[str, str], ...]
# Creates the k-th task of a submission; returns its id.
CreateOne = Callable[[int], Awaitable[str]]


@dataclass(frozen=True)
class Submission:
    """What the client saw of a submit phase, index k for the k-th task."""

    ids: list[str]
    # time.time() taken just before each CreateTask call was made.
    submitted_at: list[float]
    # time.time() when each CreateTask reply arrived.
    replied_at: list[float]
    # Wall-clock bounds of the whole phase (first call made, last reply in).
    started: float
    ended: float


class Client:
    def __init__(self, address: str) -> None:
        self.channel = aio.insecure_channel(address)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthServiceStub(self.channel)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(self.channel)
        self.metadata: Metadata = ()

    async def close(self) -> None:
        await self.channel.close()

    async def login(self, username: str, password: str) -> None:
        reply = await self.auth.Login(
            auth_pb2.LoginRequest(username=username, password=password), timeout=RPC_TIMEOUT
        )
        self.metadata = (("authorization", f"Bearer {reply.access_token}"),)

    async def create_worker_token(self, name: str) -> str:
        reply = await self.auth.CreateApiToken(
            auth_pb2.CreateApiTokenRequest(name=name, scope="worker"),
            metadata=self.metadata,
            timeout=RPC_TIMEOUT,
        )
        return reply.token

    async def server_version(self) -> str:
        reply = await self.health.Check(health_pb2.CheckRequest(), timeout=RPC_TIMEOUT)
        return reply.version

    async def wait_for_worker(
        self, name: str, seconds: float, check_alive: Callable[[], None]
    ) -> workers_pb2.Worker:
        deadline = time.monotonic() + seconds
        while True:
            reply = await self.workers.ListWorkers(
                workers_pb2.ListWorkersRequest(), metadata=self.metadata, timeout=RPC_TIMEOUT
            )
            for worker in reply.workers:
                if worker.name == name:
                    return worker
            check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {name!r} did not connect within {seconds}s")
            await asyncio.sleep(0.05)

    def raw_create(self, requests: Sequence[tasks_pb2.CreateTaskRequest]) -> CreateOne:
        """Task k is requests[k], sent as is on the generated stub (no
        idempotency key unless the request has one)."""
        create = self.tasks.CreateTask
        metadata = self.metadata

        async def create_one(k: int) -> str:
            reply = await create(requests[k], metadata=metadata, timeout=RPC_TIMEOUT)
            return reply.id

        return create_one

    async def any_with_status(self, status: tasks_pb2.TaskStatus.ValueType) -> bool:
        """Whether any task has this status (asks for one row, not a count)."""
        reply = await self.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(status=status, page_size=1),
            metadata=self.metadata,
            timeout=RPC_TIMEOUT,
        )
        return bool(reply.tasks)

    async def all_tasks(self) -> dict[str, tasks_pb2.Task]:
        """Every task the server holds, by id (keyset pages, largest size)."""
        found: dict[str, tasks_pb2.Task] = {}
        token = ""
        while True:
            reply = await self.tasks.ListTasks(
                tasks_pb2.ListTasksRequest(page_size=LIST_PAGE_SIZE, page_token=token),
                metadata=self.metadata,
                timeout=RPC_TIMEOUT,
            )
            for task in reply.tasks:
                found[task.id] = task
            token = reply.next_page_token
            if not token:
                return found

    async def _nothing_unfinished(self) -> bool:
        if await self.any_with_status(tasks_pb2.TASK_STATUS_RUNNING):
            return False
        return not await self.any_with_status(tasks_pb2.TASK_STATUS_QUEUED)

    async def wait_until_settled(
        self,
        ids: Sequence[str],
        *,
        seconds: float,
        poll_seconds: float,
        check_alive: Callable[[], None],
        on_quiet: Callable[[], None] = lambda: None,
    ) -> dict[str, tasks_pb2.Task]:
        """Wait until no task is QUEUED or RUNNING, then read every task and
        confirm that each of `ids` is in a final state; the records of `ids`.
        `on_quiet` is called just before each such full read.

        Each poll asks for one row: is any task RUNNING? While the worker is
        busy the answer is yes and that is all the poll costs (the server
        sorts at most `slots` rows). Only when nothing runs does it ask
        whether any task is QUEUED, a query that sorts the whole queue on
        this server's SQLite schema and would otherwise load the server while
        it is measured. The two calls are not one snapshot, hence the full
        read that confirms the end. The results are computed from the
        server's own timestamps, so the poll interval does not bias them; it
        only adds to `wall_seconds`.
        """
        deadline = time.monotonic() + seconds
        while True:
            if await self._nothing_unfinished():
                on_quiet()
                records = await self.all_tasks()
                if all(_settled(records.get(i)) for i in ids):
                    return {i: records[i] for i in ids}
            check_alive()
            if time.monotonic() > deadline:
                records = await self.all_tasks()
                statuses = Counter(_status_name(records.get(i)) for i in ids)
                raise TimeoutError(f"tasks not finished after {seconds}s: {dict(statuses)}")
            await asyncio.sleep(poll_seconds)


def _settled(task: tasks_pb2.Task | None) -> bool:
    return task is not None and task.status not in (*UNFINISHED, tasks_pb2.TASK_STATUS_PENDING)


def _status_name(task: tasks_pb2.Task | None) -> str:
    return "MISSING" if task is None else tasks_pb2.TaskStatus.Name(task.status)


def sdk_create(client: sdk.Client, key: str = "i") -> CreateOne:
    """Task k through the SDK as a user creates one: `tasks.create("echo",
    {key: k}, start=True)` with its defaults, so with an idempotency key of
    its making; the SDK builds the request inside the call."""

    async def create_one(k: int) -> str:
        task = await client.tasks.create("echo", {key: k}, start=True)
        return task.id

    return create_one


async def submit(create_one: CreateOne, count: int, concurrency: int) -> Submission:
    """create_one(k) for k in 0..count-1, at most `concurrency` calls in flight."""
    ids = [""] * count
    submitted_at = [0.0] * count
    replied_at = [0.0] * count
    next_index = iter(range(count))

    async def lane() -> None:
        for k in next_index:
            submitted_at[k] = time.time()
            ids[k] = await create_one(k)
            replied_at[k] = time.time()

    started = time.time()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, count)):
            group.create_task(lane())
    ended = time.time()
    return Submission(ids, submitted_at, replied_at, started, ended)


def echo_requests(
    count: int, key: str = "i", concurrency: tuple[int, int] | None = None
) -> list[tasks_pb2.CreateTaskRequest]:
    """CreateTask(type="echo", input={key: k}, start=True) for k in 0..count-1,
    built before any clock starts so that building them is not measured.
    `concurrency=(keys, limit)`: task k names concurrency key k mod keys."""
    requests = []
    for k in range(count):
        payload = struct_pb2.Struct()
        payload.update({key: k})
        request = tasks_pb2.CreateTaskRequest(type="echo", input=payload, start=True)
        if concurrency is not None:
            request.concurrency_key = f"key-{k % concurrency[0]}"
            request.concurrency_limit = concurrency[1]
        requests.append(request)
    return requests


async def connect(address: str, username: str, password: str) -> Client:
    client = Client(address)
    try:
        await asyncio.wait_for(client.channel.channel_ready(), RPC_TIMEOUT)
        await client.login(username, password)
    except BaseException:
        await client.close()
        raise
    log(f"logged in to {address} as {username}")
    return client
