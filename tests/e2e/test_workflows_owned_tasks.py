"""A workflow owns its tasks (DESIGN §5, "Workflows"): while a run is running,
the tasks of its nodes cannot be deleted, changed or run again from outside
it (FAILED_PRECONDITION, naming the run to cancel), so the run never waits
on a task that is gone; once the run has ended, they are ordinary tasks."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc

from orchestrator.proto import tasks_pb2, workers_pb2
from tests.e2e.conftest import (
    Client,
    RawWorker,
    WorkerFactory,
    read_rest,
    read_until,
    refused,
    to_struct,
    update,
)
from tests.e2e.workflow_helpers import (
    RUN_RUNNING,
    RUN_SUCCEEDED,
    Flows,
    edge,
    is_event,
    kinds,
    node,
    nodes_of,
)

HELD = "owned.held"  # no worker serves it until the test says so


async def test_a_running_runs_tasks_are_refused_and_the_run_still_completes(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "2")
    flows = Flows(admin)
    workflow = await flows.create("owned", [node("a"), node("b", HELD)], [edge("a", "b")])
    call, started = await flows.start(workflow.id)
    run_id = started.run_id
    await read_until(call, is_event("NODE_QUEUED", "b"))
    by_id = nodes_of(await flows.run(run_id))
    done_task, waiting_task = by_id["a"].task_id, by_id["b"].task_id

    attempts: dict[str, Awaitable[Any]] = {
        "delete the waiting node's task": admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=waiting_task), metadata=admin.metadata, timeout=30
        ),
        "rename the waiting node's task": update(
            admin, tasks_pb2.Task(id=waiting_task, title="mine now"), "title"
        ),
        "change the waiting node's input": update(
            admin, tasks_pb2.Task(id=waiting_task, input=to_struct({"x": 1})), "input"
        ),
        "delete the finished node's task": admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=done_task), metadata=admin.metadata, timeout=30
        ),
        "run the finished node's task again": admin.execute(done_task),
    }
    for what, attempt in attempts.items():
        error = await refused(attempt)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, what
        assert f"workflow run {run_id}" in (error.details() or ""), what
        assert "cancel the run" in (error.details() or ""), what

    # Nothing changed.
    waiting = await admin.get(waiting_task)
    assert (waiting.status, waiting.title) == (tasks_pb2.TASK_STATUS_QUEUED, "b")
    done = await admin.get(done_task)
    assert (done.status, done.last_sequence) == (tasks_pb2.TASK_STATUS_SUCCEEDED, 3)
    assert (await flows.run(run_id)).status == RUN_RUNNING

    token = await admin.worker_token("owned-held")
    worker = RawWorker(admin, (("authorization", f"Bearer {token}"),))
    await worker.hello("owned-held", [HELD])
    assignment = await worker.assignment()
    assert assignment.task_id == waiting_task
    await worker.send(
        workers_pb2.WorkerMessage(
            complete=workers_pb2.TaskComplete(
                task_id=waiting_task,
                fencing_token=assignment.fencing_token,
                output=to_struct({"held": "no more"}),
            )
        )
    )
    rest = await read_rest(call)
    await worker.close()

    assert kinds(rest)[-1] == "RUN_SUCCEEDED"
    assert (await flows.run(run_id)).status == RUN_SUCCEEDED
    # The run is over: its tasks are the user's to change or remove.
    renamed = await update(admin, tasks_pb2.Task(id=waiting_task, title="kept"), "title")
    assert renamed.title == "kept"
    await admin.tasks.DeleteTask(
        tasks_pb2.DeleteTaskRequest(id=done_task), metadata=admin.metadata, timeout=30
    )
    assert (await refused(admin.get(done_task))).code() == grpc.StatusCode.NOT_FOUND
