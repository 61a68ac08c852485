"""CreateTasks (a batch in one transaction, idempotent per item) and
StartTask (queue a PENDING task)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest

from orchestrator.client import Client as SdkClient
from orchestrator.client import TaskSpec, TaskStatus
from orchestrator.errors import InvalidArgument
from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    STREAM_TIMEOUT,
    Client,
    fields_of,
    refused,
    to_struct,
)
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

QUEUED = tasks_pb2.TASK_STATUS_QUEUED
PENDING = tasks_pb2.TASK_STATUS_PENDING


def item(type: str, **fields: object) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(type=type, input=to_struct({"n": 1}), **fields)  # type: ignore[arg-type]


async def create_tasks(client: Client, *items: tasks_pb2.CreateTaskRequest) -> list[tasks_pb2.Task]:
    reply = await client.tasks.CreateTasks(
        tasks_pb2.CreateTasksRequest(tasks=list(items)),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    return list(reply.tasks)


async def test_a_batch_is_created_in_order(admin: Client) -> None:
    kind = f"batch-{uuid.uuid4().hex[:6]}"
    created = await create_tasks(
        admin, item(kind, title="first", start=True), item(kind, title="second"), item(kind)
    )
    assert [t.title for t in created] == ["first", "second", kind]
    assert [t.status for t in created] == [QUEUED, PENDING, PENDING]
    for task in created:
        assert (await admin.get(task.id)).title == task.title
    assert await first_event(admin, created[0].id) == (1, tasks_pb2.TASK_EVENT_TYPE_QUEUED)


async def test_keys_make_a_repeated_batch_create_nothing_new(admin: Client) -> None:
    kind = f"keyed-{uuid.uuid4().hex[:6]}"
    key = uuid.uuid4().hex
    first = await create_tasks(admin, item(kind, idempotency_key=key), item(kind))
    again = await create_tasks(
        admin,
        item(kind, idempotency_key=key, title="changed"),
        item(kind, idempotency_key=key),  # the same key twice in one batch
    )
    assert again[0].id == again[1].id == first[0].id
    assert again[0].title == kind  # the stored task, not the new request
    listed = await admin.list_ids(type=kind)
    assert sorted(listed) == sorted({first[0].id, first[1].id})


async def test_one_invalid_item_refuses_the_batch_and_writes_nothing(admin: Client) -> None:
    kind = f"bad-{uuid.uuid4().hex[:6]}"
    error = await refused(
        admin.tasks.CreateTasks(
            tasks_pb2.CreateTasksRequest(
                tasks=[item(kind), tasks_pb2.CreateTaskRequest(type=""), item(kind, priority=10**6)]
            ),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"tasks[1].type", "tasks[2].priority"} <= set(fields_of(error)), fields_of(error)
    assert await admin.list_ids(type=kind) == []


@pytest.mark.parametrize("count", [0, 1001])
async def test_a_batch_has_one_to_a_thousand_tasks(admin: Client, count: int) -> None:
    error = await refused(
        admin.tasks.CreateTasks(
            tasks_pb2.CreateTasksRequest(tasks=[item("echo")] * count),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == ["tasks"]


async def first_event(client: Client, task_id: str) -> tuple[int, int]:
    """The first event of the task's log: (sequence, type)."""
    watch = client.watch_call(task_id)
    try:
        event = await asyncio.wait_for(watch.read(), STREAM_TIMEOUT)
    finally:
        watch.cancel()
    return event.sequence, event.type


async def start(client: Client, task_id: str) -> tasks_pb2.Task:
    return await client.tasks.StartTask(
        tasks_pb2.StartTaskRequest(id=task_id), metadata=client.metadata, timeout=CALL_TIMEOUT
    )


async def test_start_queues_a_pending_task_once(admin: Client) -> None:
    pending = await admin.create(f"idle-{uuid.uuid4().hex[:6]}", {})
    assert pending.status == PENDING
    started = await start(admin, pending.id)
    assert started.status == QUEUED
    again = await start(admin, pending.id)  # a retried call changes nothing
    assert again.status == QUEUED
    assert await first_event(admin, pending.id) == (1, tasks_pb2.TASK_EVENT_TYPE_QUEUED)
    now = await admin.get(pending.id)
    assert (now.status, now.last_sequence) == (QUEUED, 1)  # one QUEUED event, not two


async def test_start_of_a_finished_task_is_refused(admin: Client) -> None:
    pending = await admin.create(f"idle-{uuid.uuid4().hex[:6]}", {})
    await admin.cancel(pending.id)
    error = await refused(start(admin, pending.id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ExecuteTask" in (error.details() or "")
    missing = await refused(start(admin, str(uuid.uuid4())))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_the_sdk_creates_batches_and_starts_tasks(orchestrator: ServerProcess) -> None:
    kind = f"sdk-{uuid.uuid4().hex[:6]}"
    assert orchestrator.address
    async with SdkClient(orchestrator.address) as client:
        await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        created = await client.tasks.create_many(
            [TaskSpec(kind, {"i": i}, start=i == 0) for i in range(5)]
        )
        assert [t.input for t in created] == [{"i": i} for i in range(5)]
        assert [t.status for t in created] == [TaskStatus.QUEUED] + [TaskStatus.PENDING] * 4
        assert all(t.idempotency_key for t in created)
        started = await client.tasks.start(created[1].id)
        assert started.status is TaskStatus.QUEUED
        with pytest.raises(InvalidArgument) as invalid:
            await client.tasks.create_many([TaskSpec(kind), TaskSpec("")])
        assert [v.field for v in invalid.value.violations] == ["tasks[1].type"]
