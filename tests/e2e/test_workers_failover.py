"""Workers lost mid-task and late reports (DESIGN §5, "Delivery" and
"Leases"): a lost worker's task runs again elsewhere, and a result from an
attempt that is no longer current is refused, so the record holds one.

One server (with a two-second lease) serves the whole module; each test
brings its own workers."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from orchestrator.proto import tasks_pb2, workers_pb2
from tests.e2e.conftest import (
    Client,
    RawWorker,
    WorkerFactory,
    kinds,
    of_type,
    read_rest,
    read_until,
    to_dict,
    to_struct,
)
from tests.support.server import ServerProcess

LEASE_SECONDS = 2
pytestmark = pytest.mark.server_env(
    ORCHESTRATOR_LEASE_SECONDS=str(LEASE_SECONDS), ORCHESTRATOR_HEARTBEAT_SECONDS="1"
)


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


RUNNING = tasks_pb2.TASK_STATUS_RUNNING
SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED
QUEUED = tasks_pb2.TASK_STATUS_QUEUED
STARTED = tasks_pb2.TASK_EVENT_TYPE_STARTED


async def test_task_of_a_killed_worker_runs_again_elsewhere(
    admin: Client, start_worker: WorkerFactory
) -> None:
    first = await start_worker("--demo", "--slots", "1")
    task = await admin.create("sleep", {"seconds": 3})
    execution = admin.execute_call(task.id)
    await read_until(execution, of_type("STARTED"))
    await asyncio.to_thread(first.wait_for_log, rf"task {task.id} \(sleep\) started", 15)

    first.kill()
    assert await asyncio.to_thread(first.wait, 15) == -9
    # No worker is left: the task goes back to the queue at once, lease or not.
    requeued = (await read_until(execution, of_type("REQUEUED")))[-1]
    assert requeued.status == QUEUED
    second = await start_worker("--demo", "--slots", "1")
    rest = await read_rest(execution)

    events = await admin.watch(task.id)
    assert kinds(events).count("REQUEUED") == 1
    assert kinds(events).count("SUCCEEDED") == 1
    assert kinds(events)[-1] == "SUCCEEDED"
    assert [e.sequence for e in events][-len(rest) :] == [e.sequence for e in rest]
    started = [e for e in events if e.type == STARTED]
    assert [(e.worker_id, e.attempt) for e in started] == [
        (first.worker_id, 1),
        (second.worker_id, 1),
    ]
    assert to_dict(events[-1].output) == {"slept": 3}
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.worker_id) == (SUCCEEDED, 1, second.worker_id)


def complete(
    task_id: str, fencing_token: int, output: dict[str, object]
) -> workers_pb2.WorkerMessage:
    return workers_pb2.WorkerMessage(
        complete=workers_pb2.TaskComplete(
            task_id=task_id, fencing_token=fencing_token, output=to_struct(output)
        )
    )


async def rejection_of(worker: RawWorker) -> workers_pb2.Rejection:
    message = await worker.receive()
    assert message.WhichOneof("kind") == "rejection", message
    return message.rejection


async def test_completion_from_a_stale_attempt_is_refused(admin: Client) -> None:
    token = await admin.worker_token("raw")
    metadata = (("authorization", f"Bearer {token}"),)
    task = await admin.create("raw.job", {"n": 1}, start=True)

    one = RawWorker(admin, metadata)
    await one.hello("raw-one", ["raw.job"])
    first = await one.assignment()
    assert (first.task_id, first.attempt, to_dict(first.input)) == (task.id, 1, {"n": 1})
    # The stream ends: the task is re-queued at once, not after the lease.
    await one.close()
    assert (await admin.get(task.id)).status == QUEUED

    two = RawWorker(admin, metadata)
    await two.hello("raw-two", ["raw.job"])
    second = await two.assignment()
    assert second.task_id == task.id
    assert second.fencing_token > first.fencing_token
    assert second.attempt == 1  # a lost worker's attempt does not count

    three = RawWorker(admin, metadata)
    await three.hello("raw-three", ["raw.job"])
    for stale_sender in (three, two):
        await stale_sender.send(complete(task.id, first.fencing_token, {"by": "first"}))
        rejection = await rejection_of(stale_sender)
        assert (rejection.task_id, rejection.fencing_token, rejection.code) == (
            task.id,
            first.fencing_token,
            "FAILED_PRECONDITION",
        )
        unchanged = await admin.get(task.id)
        assert (unchanged.status, unchanged.worker_id) == (RUNNING, two.worker_id)
        assert not unchanged.HasField("output")

    await two.send(complete(task.id, second.fencing_token, {"by": "second"}))
    events = await admin.watch(task.id)

    assert kinds(events) == ["QUEUED", "STARTED", "REQUEUED", "STARTED", "SUCCEEDED"]
    assert to_dict(events[-1].output) == {"by": "second"}
    done = await admin.get(task.id)
    assert (done.status, to_dict(done.output)) == (SUCCEEDED, {"by": "second"})

    # Exactly once in the record: a repeat of the current attempt's result is
    # refused too.
    await two.send(complete(task.id, second.fencing_token, {"by": "second, again"}))
    rejection = await rejection_of(two)
    assert (rejection.fencing_token, rejection.code) == (
        second.fencing_token,
        "FAILED_PRECONDITION",
    )
    assert (await admin.get(task.id)).last_sequence == events[-1].sequence
    assert kinds(await admin.watch(task.id)).count("SUCCEEDED") == 1

    for worker in (two, three):
        await worker.close()
    assert await two.call.code() == grpc.StatusCode.OK


async def test_heartbeats_hold_the_lease_and_silence_loses_it(admin: Client) -> None:
    token = await admin.worker_token("raw-lease")
    metadata = (("authorization", f"Bearer {token}"),)
    task = await admin.create("raw.lease", {"n": 1}, start=True)
    watch = admin.watch_call(task.id)
    assert kinds(await read_until(watch, of_type("QUEUED"))) == ["QUEUED"]

    holder = RawWorker(admin, metadata)
    welcome = await holder.hello("raw-holder", ["raw.lease"])
    assert (welcome.lease_seconds, welcome.heartbeat_interval_seconds) == (LEASE_SECONDS, 1)
    first = await holder.assignment()
    assert kinds(await read_until(watch, of_type("STARTED"))) == ["STARTED"]
    # Heartbeats every quarter lease, for one and a half leases: the task
    # stays put. (Time passing is what is tested here, so the test waits.)
    for _ in range(6):
        await holder.send(workers_pb2.WorkerMessage(heartbeat=workers_pb2.Heartbeat()))
        await asyncio.sleep(LEASE_SECONDS / 4)
    held = await admin.get(task.id)
    assert (held.status, held.worker_id, held.last_sequence) == (RUNNING, holder.worker_id, 2)

    # Silence, with the stream still open: the lease runs out and the reaper
    # puts the task back in the queue.
    requeued = (await read_until(watch, of_type("REQUEUED"), seconds=LEASE_SECONDS * 5))[-1]
    assert (requeued.status, requeued.message) == (QUEUED, "lease expired")

    taker = RawWorker(admin, metadata)
    await taker.hello("raw-taker", ["raw.lease"])
    second = await taker.assignment()
    assert (second.task_id, second.attempt) == (task.id, 1)
    assert second.fencing_token > first.fencing_token
    await holder.send(complete(task.id, first.fencing_token, {"by": "holder"}))
    assert (await rejection_of(holder)).code == "FAILED_PRECONDITION"
    await taker.send(complete(task.id, second.fencing_token, {"by": "taker"}))
    rest = await read_rest(watch)
    assert kinds(rest) == ["STARTED", "SUCCEEDED"]
    assert to_dict(rest[-1].output) == {"by": "taker"}
    for worker in (holder, taker):
        await worker.close()
