"""The worker SDK and `orchestrator worker`, end to end: a plain handler's
progress and log reach the task's events, and SIGTERM lets running work
finish within the grace period, or hands it back once the grace is over.

One server serves the whole module; each test starts its own workers and
leaves no task of theirs queued or running."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    Client,
    WorkerFactory,
    WorkerProcess,
    kinds,
    of_type,
    read_rest,
    read_until,
    to_dict,
)
from tests.support.server import ServerProcess

SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED
QUEUED = tasks_pb2.TASK_STATUS_QUEUED
PROGRESS = tasks_pb2.TASK_EVENT_TYPE_PROGRESS
LOG = tasks_pb2.TASK_EVENT_TYPE_LOG


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


STEPS = [[10, "warming up"], [55, "half-way there ✓"], [90, "almost done"]]


async def test_plain_handler_reports_progress_and_log(
    admin: Client, start_worker: WorkerFactory
) -> None:
    worker = await start_worker("tests.support.workers:worker")
    task = await admin.create("report", {"steps": STEPS})

    events = await admin.execute(task.id)

    assert kinds(events)[:2] == ["QUEUED", "STARTED"]
    assert kinds(events)[-1] == "SUCCEEDED"
    assert events[1].worker_id == worker.worker_id
    assert set(kinds(events)[2:-1]) == {"PROGRESS", "LOG"}
    logs = [e.message for e in events if e.type == LOG]
    assert logs == [f"step {n}: {message}" for n, (_, message) in enumerate(STEPS, start=1)]
    # Progress reports that pile up may be merged, newest winning: the ones
    # that arrive are reported ones, in order, and the last one always does.
    progress = [[e.progress, e.message] for e in events if e.type == PROGRESS]
    assert progress, "no PROGRESS event"
    assert progress[-1] == STEPS[-1]
    assert all(p in STEPS for p in progress)
    assert progress == sorted(progress)
    output = to_dict(events[-1].output)
    assert output["main_thread"] is False
    assert output["steps"] == len(STEPS)
    done = await admin.get(task.id)
    assert (done.status, done.progress_message) == (SUCCEEDED, "almost done")


async def drain_with_a_running_task(admin: Client, worker: WorkerProcess) -> Any:
    """Starts a two-second sleep on `worker`, SIGTERMs it once the sleep runs;
    the ExecuteTask call of the sleep."""
    task = await admin.create("sleep", {"seconds": 2})
    execution = admin.execute_call(task.id)
    await read_until(execution, of_type("STARTED"))
    # STARTED is written when the server assigns the task; wait until the
    # worker has the assignment in hand too.
    await asyncio.to_thread(worker.wait_for_log, rf"task {task.id} \(sleep\) started", 15)
    worker.terminate()
    await asyncio.to_thread(worker.wait_for_log, r"SIGTERM received", 15)
    return execution


async def test_sigterm_lets_the_running_task_finish(
    admin: Client, start_worker: WorkerFactory
) -> None:
    worker = await start_worker("--demo", "--slots", "2", "--grace", "30")
    signalled = time.monotonic()
    execution = await drain_with_a_running_task(admin, worker)
    # Draining: work offered now is handed back, not run.
    later = await admin.create("echo", {"late": True}, start=True)
    await asyncio.to_thread(worker.wait_for_log, rf"task {later.id} \(echo\) handed back", 15)
    rest = await read_rest(execution)
    exit_code = await asyncio.to_thread(worker.wait, 30)

    assert exit_code == 0, worker.log
    assert time.monotonic() - signalled < 30
    assert "REQUEUED" not in kinds(rest)
    assert kinds(rest)[-1] == "SUCCEEDED"
    assert to_dict(rest[-1].output) == {"slept": 2}
    done = await admin.get(rest[-1].task_id)
    assert (done.status, done.attempt, done.worker_id) == (SUCCEEDED, 1, worker.worker_id)
    untouched = await admin.get(later.id)
    assert (untouched.status, untouched.attempt) == (QUEUED, 0)
    await admin.cancel(later.id)


async def test_draining_worker_is_not_offered_a_released_task_again(
    admin: Client, start_worker: WorkerFactory
) -> None:
    worker = await start_worker("--demo", "--slots", "2", "--grace", "30")
    execution = await drain_with_a_running_task(admin, worker)
    later = await admin.create("echo", {"late": True}, start=True)
    await asyncio.to_thread(worker.wait_for_log, rf"task {later.id} \(echo\) handed back", 15)
    await read_rest(execution)
    assert await asyncio.to_thread(worker.wait, 30) == 0
    watch = admin.watch_call(later.id)
    try:
        events = await read_until(watch, lambda e: e.sequence >= 3)
        assert kinds(events) == ["QUEUED", "STARTED", "REQUEUED"]
        # One offer, one hand-back: nothing more while the worker drained.
        assert (await admin.get(later.id)).last_sequence == 3
    finally:
        watch.cancel()
        await admin.cancel(later.id)


async def test_sigterm_hands_back_what_outlasts_the_grace(
    admin: Client, start_worker: WorkerFactory
) -> None:
    worker = await start_worker("--demo", "--slots", "1", "--grace", "0.5")
    task = await admin.create("sleep", {"seconds": 30})
    execution = admin.execute_call(task.id)
    await read_until(execution, of_type("STARTED"))
    await asyncio.to_thread(worker.wait_for_log, rf"task {task.id} \(sleep\) started", 15)

    worker.terminate()
    requeued = (await read_until(execution, of_type("REQUEUED")))[-1]
    exit_code = await asyncio.to_thread(worker.wait, 30)

    assert exit_code == 0, worker.log
    assert requeued.status == QUEUED
    assert requeued.message == "handed back by worker"
    assert f"task {task.id} (sleep) handed back: grace period over" in worker.log
    pending = await admin.get(task.id)
    assert (pending.status, pending.attempt) == (QUEUED, 0)
    # The next worker runs it from the start, as attempt 1.
    await start_worker("--demo", "--slots", "1")
    started = (await read_until(execution, of_type("STARTED")))[-1]
    assert started.attempt == 1
    await admin.cancel(task.id)
    assert kinds(await read_rest(execution))[-1] == "CANCELLED"
