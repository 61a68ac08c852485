"""Tasks run by the demo worker, end to end (DESIGN §4-§5): results, retries,
many at once, cancellation, what a running task refuses.

One server and one demo worker (10 slots) serve the whole module: each test
looks only at its own tasks, and leaves none running."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc import aio

from orchestrator.proto import tasks_pb2, workers_pb2
from tests.e2e.conftest import (
    Client,
    WorkerProcess,
    kinds,
    of_type,
    read_rest,
    read_until,
    refused,
    to_dict,
    to_struct,
    update,
)
from tests.support.server import ServerProcess

SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED
FAILED = tasks_pb2.TASK_STATUS_FAILED
CANCELLED = tasks_pb2.TASK_STATUS_CANCELLED
RUNNING = tasks_pb2.TASK_STATUS_RUNNING


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


NESTED_INPUT = {
    "text": "héllo ✓ 日本語 🚀",
    "nothing": None,
    "yes": True,
    "no": False,
    "number": 42,
    "fraction": -0.125,
    "big": 1e300,
    "empty": {},
    "list": [
        {"inner": [1, "two", None, {"deep": {"deeper": ["🚀", False]}}]},
        [],
        [[["x"]]],
        '\u0000 and \n and "quotes" and \\',
    ],
}


async def test_echo_returns_its_input_intact(admin: Client, demo_worker: WorkerProcess) -> None:
    task = await admin.create("echo", NESTED_INPUT, title="echo ✓")
    assert task.status == tasks_pb2.TASK_STATUS_PENDING
    assert task.attempt == 0

    events = await admin.execute(task.id)

    assert kinds(events) == ["QUEUED", "STARTED", "SUCCEEDED"]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert {e.task_id for e in events} == {task.id}
    assert to_dict(events[-1].output) == NESTED_INPUT
    assert events[1].worker_id == demo_worker.worker_id
    done = await admin.get(task.id)
    assert done.status == SUCCEEDED
    assert done.attempt == 1
    assert done.title == "echo ✓"
    assert to_dict(done.output) == NESTED_INPUT
    assert to_dict(done.input) == NESTED_INPUT
    assert done.HasField("started_at") and done.HasField("finished_at")
    assert done.created_at.ToDatetime() <= done.started_at.ToDatetime()
    assert done.started_at.ToDatetime() <= done.finished_at.ToDatetime()
    assert done.error == ""


async def test_failing_task_is_retried_up_to_max_attempts(
    admin: Client, demo_worker: WorkerProcess
) -> None:
    task = await admin.create("fail", {"message": "boom: the disk is on fire"}, max_attempts=3)

    events = await admin.execute(task.id)

    assert kinds(events) == [
        "QUEUED",
        "STARTED",
        "RETRYING",
        "STARTED",
        "RETRYING",
        "STARTED",
        "FAILED",
    ]
    assert [e.attempt for e in events if e.type == tasks_pb2.TASK_EVENT_TYPE_STARTED] == [1, 2, 3]
    assert [e.message for e in events[2::2]] == ["boom: the disk is on fire"] * 3
    assert events[-1].status == FAILED
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.error) == (FAILED, 3, "boom: the disk is on fire")
    assert done.HasField("finished_at")
    assert not done.HasField("output")


async def test_permanent_failure_is_not_retried(admin: Client, demo_worker: WorkerProcess) -> None:
    task = await admin.create("fail", {"message": "bad input", "permanent": True}, max_attempts=3)

    events = await admin.execute(task.id)

    assert kinds(events) == ["QUEUED", "STARTED", "FAILED"]
    assert events[-1].message == "bad input"
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.error) == (FAILED, 1, "bad input")


TASKS = 200


async def test_many_tasks_at_once_all_succeed(admin: Client, demo_worker: WorkerProcess) -> None:
    batch = {"batch": uuid.uuid4().hex}
    created = await asyncio.gather(
        *(admin.create("echo", {"index": i}, start=True, labels=batch) for i in range(TASKS))
    )
    assert len({t.id for t in created}) == TASKS
    assert all(t.status == tasks_pb2.TASK_STATUS_QUEUED for t in created)

    streams = await asyncio.gather(*(admin.watch(t.id) for t in created))

    for index, (task, events) in enumerate(zip(created, streams, strict=True)):
        assert kinds(events) == ["QUEUED", "STARTED", "SUCCEEDED"], (task.id, events)
        assert to_dict(events[-1].output) == {"index": index}
    succeeded = await admin.list_ids(status=SUCCEEDED, label=f"batch={batch['batch']}")
    assert sorted(succeeded) == sorted(t.id for t in created)


async def busy_slots(client: Client, worker_id: str) -> int:
    reply = await client.workers.ListWorkers(
        workers_pb2.ListWorkersRequest(), metadata=client.metadata, timeout=30
    )
    return next(w.busy_slots for w in reply.workers if w.id == worker_id)


async def test_cancel_stops_the_running_task(admin: Client, demo_worker: WorkerProcess) -> None:
    task = await admin.create("sleep", {"seconds": 30})
    call = admin.execute_call(task.id)
    started = await read_until(call, of_type("STARTED"))
    assert kinds(started) == ["QUEUED", "STARTED"]
    # STARTED is written when the server assigns the task; wait until the
    # worker runs it.
    await asyncio.to_thread(demo_worker.wait_for_log, rf"task {task.id} \(sleep\) started", 15)
    assert await busy_slots(admin, demo_worker.worker_id) == 1

    cancelled = await admin.cancel(task.id, reason="changed my mind")
    assert cancelled.status == CANCELLED

    rest = await read_rest(call)
    assert rest, "the ExecuteTask stream ended without the cancellation"
    assert kinds(rest)[-1] == "CANCELLED"
    assert set(kinds(rest)) <= {"PROGRESS", "CANCELLED"}
    assert rest[-1].status == CANCELLED
    assert rest[-1].message == "changed my mind"
    await asyncio.to_thread(
        demo_worker.wait_for_log, rf"task {task.id} cancelled: changed my mind", 15
    )
    done = await admin.get(task.id)
    assert (done.status, done.error) == (CANCELLED, "changed my mind")
    assert done.HasField("finished_at")
    assert await busy_slots(admin, demo_worker.worker_id) == 0

    with pytest.raises(aio.AioRpcError) as again:
        await admin.cancel(task.id)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (await admin.get(task.id)).last_sequence == rest[-1].sequence


async def test_running_task_refuses_input_change_and_delete(
    admin: Client, demo_worker: WorkerProcess
) -> None:
    task = await admin.create("sleep", {"seconds": 30})
    execution = admin.execute_call(task.id)
    await read_until(execution, of_type("STARTED"))

    error = await refused(
        update(admin, tasks_pb2.Task(id=task.id, input=to_struct({"seconds": 1})), "input")
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    error = await refused(
        admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=task.id), metadata=admin.metadata, timeout=30
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    running = await admin.get(task.id)
    assert running.status == RUNNING
    assert to_dict(running.input) == {"seconds": 30}
    # The title may change in any state.
    renamed = await update(admin, tasks_pb2.Task(id=task.id, title="renamed"), "title")
    assert (renamed.title, renamed.status) == ("renamed", RUNNING)

    await admin.cancel(task.id)
    rest = kinds(await read_rest(execution))
    assert "UPDATED" in rest
    assert rest[-1] == "CANCELLED"
    # Finished now: its input may change, and it may go.
    changed = await update(
        admin, tasks_pb2.Task(id=task.id, input=to_struct({"seconds": 1})), "input"
    )
    assert (changed.status, to_dict(changed.input)) == (CANCELLED, {"seconds": 1})
    await admin.tasks.DeleteTask(
        tasks_pb2.DeleteTaskRequest(id=task.id), metadata=admin.metadata, timeout=30
    )

    for call in (admin.get(task.id), admin.watch(task.id), admin.execute(task.id)):
        assert (await refused(call)).code() == grpc.StatusCode.NOT_FOUND
    assert task.id not in await admin.list_ids()
    error = await refused(
        admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=task.id), metadata=admin.metadata, timeout=30
        )
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_cancel_a_queued_task_ends_its_execution(admin: Client) -> None:
    task = await admin.create("nobody.serves.this", {"n": 1})
    call = admin.execute_call(task.id)
    assert kinds(await read_until(call, of_type("QUEUED"))) == ["QUEUED"]

    await admin.cancel(task.id)

    rest = await read_rest(call)
    assert kinds(rest) == ["CANCELLED"]
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.error) == (CANCELLED, 0, "cancelled by user")


async def test_attempt_past_its_timeout_fails(admin: Client, demo_worker: WorkerProcess) -> None:
    task = await admin.create("sleep", {"seconds": 30}, timeout_seconds=1, max_attempts=2)

    events = await asyncio.wait_for(admin.execute(task.id), 30)

    assert kinds(events) == ["QUEUED", "STARTED", "RETRYING", "STARTED", "FAILED"]
    assert [e.message for e in events if e.type == tasks_pb2.TASK_EVENT_TYPE_RETRYING] == [
        "timed out after 1s"
    ]
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.error) == (FAILED, 2, "timed out after 1s")
