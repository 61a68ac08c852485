"""Poison tasks end (DESIGN §5, "Delivery" and "Leases"): a task whose worker
is lost again and again fails once ORCHESTRATOR_MAX_LOST_DELIVERIES losses
are reached, while a clean hand-back never counts; an output too large to
store or to send fails its task, and the worker's stream stays up."""

from __future__ import annotations

import asyncio
import re

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
    to_struct,
)
from tests.support.server import ServerProcess

POISON_WORKER = "tests.support.poison_workers:worker"
DEFAULT_PAYLOAD_LIMIT = 1024 * 1024
MESSAGE_LIMIT = 8 * 1024 * 1024
OVERSIZED = 9 * 1024 * 1024
# {"blob":"…"} around the blob, in compact JSON.
BLOB_JSON_OVERHEAD = 11
LEASE_SECONDS = 2
SHORT_LEASE = pytest.mark.server_env(
    ORCHESTRATOR_LEASE_SECONDS=str(LEASE_SECONDS),
    ORCHESTRATOR_HEARTBEAT_SECONDS="1",
    ORCHESTRATOR_MAX_LOST_DELIVERIES="2",
)

FAILED = tasks_pb2.TASK_STATUS_FAILED
SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED
STARTED = tasks_pb2.TASK_EVENT_TYPE_STARTED


def completion(
    assignment: workers_pb2.Assignment, output: dict[str, object]
) -> workers_pb2.WorkerMessage:
    return workers_pb2.WorkerMessage(
        complete=workers_pb2.TaskComplete(
            task_id=assignment.task_id,
            fencing_token=assignment.fencing_token,
            output=to_struct(output),
        )
    )


def release(assignment: workers_pb2.Assignment) -> workers_pb2.WorkerMessage:
    return workers_pb2.WorkerMessage(
        release=workers_pb2.TaskRelease(
            task_id=assignment.task_id, fencing_token=assignment.fencing_token
        )
    )


async def raw_worker(admin: Client, task_type: str) -> RawWorker:
    token = await admin.worker_token(f"raw-{task_type}")
    worker = RawWorker(admin, (("authorization", f"Bearer {token}"),))
    await worker.hello(f"raw-{task_type}", [task_type])
    return worker


# -- lost workers ------------------------------------------------------------------


async def test_a_task_that_kills_its_worker_fails_after_three_lost_deliveries(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    task = await admin.create("crash")
    execution = admin.execute_call(task.id)
    await read_until(execution, of_type("QUEUED"))

    killed = []
    for _ in range(3):  # the default ORCHESTRATOR_MAX_LOST_DELIVERIES
        worker = await start_worker(POISON_WORKER)
        assert await asyncio.to_thread(worker.wait, 30) == -9, worker.log
        killed.append(worker.worker_id)
    rest = await read_rest(execution)

    assert kinds(rest) == ["STARTED", "REQUEUED", "STARTED", "REQUEUED", "STARTED", "FAILED"]
    assert [e.worker_id for e in rest if e.type == STARTED] == killed
    error = "its worker was lost 3 times while running it (last: worker disconnected)"
    assert rest[-1].message == error
    failed = await admin.get(task.id)
    assert (failed.status, failed.error, failed.attempt) == (FAILED, error, 1)
    await asyncio.to_thread(
        orchestrator.wait_for_log, rf"WARNING .*its worker was lost 3 times .*task_id={task.id}"
    )


@SHORT_LEASE
async def test_a_lapsed_lease_counts_as_a_lost_worker_and_execute_starts_afresh(
    orchestrator: ServerProcess, admin: Client
) -> None:
    task = await admin.create("raw.lost", start=True)
    watch = admin.watch_call(task.id)

    one = await raw_worker(admin, "raw.lost")
    await one.assignment()
    await one.close()  # lost once: its stream ended with the task held
    two = await raw_worker(admin, "raw.lost")
    held = await two.assignment()
    # Two says nothing more: its lease lapses, the second loss of two allowed.
    events = await read_until(watch, of_type("FAILED"), seconds=LEASE_SECONDS * 10)
    watch.cancel()

    assert kinds(events) == ["QUEUED", "STARTED", "REQUEUED", "STARTED", "FAILED"]
    assert events[2].message == "worker disconnected"
    error = "its worker was lost 2 times while running it (last: lease expired)"
    failed = await admin.get(task.id)
    assert (failed.status, failed.error, failed.attempt) == (FAILED, error, 1)
    await asyncio.to_thread(
        orchestrator.wait_for_log, rf"its worker was lost 2 times .*task_id={task.id}"
    )
    await two.send(completion(held, {"late": True}))
    assert (await two.receive()).rejection.code == "FAILED_PRECONDITION"
    await two.close()

    # A fresh execution starts a fresh count: one more loss is not the last.
    execution = admin.execute_call(task.id)
    three = await raw_worker(admin, "raw.lost")
    await three.assignment()
    await three.close()
    four = await raw_worker(admin, "raw.lost")
    await four.send(completion(await four.assignment(), {"by": "four"}))
    rest = await read_rest(execution)
    await four.close()

    assert kinds(rest) == ["QUEUED", "STARTED", "REQUEUED", "STARTED", "SUCCEEDED"]
    assert (await admin.get(task.id)).status == SUCCEEDED


@SHORT_LEASE
async def test_handing_a_task_back_is_not_losing_it(admin: Client) -> None:
    task = await admin.create("raw.release", start=True)
    watch = admin.watch_call(task.id)

    for _ in range(3):  # more hand-backs than the two losses allowed
        worker = await raw_worker(admin, "raw.release")
        await worker.send(release(await worker.assignment()))
        requeued = (await read_until(watch, of_type("REQUEUED")))[-1]
        assert requeued.message == "handed back by worker"
        await worker.close()
    last = await raw_worker(admin, "raw.release")
    await last.send(completion(await last.assignment(), {"done": True}))
    rest = await read_rest(watch)
    await last.close()

    assert kinds(rest) == ["STARTED", "SUCCEEDED"]
    done = await admin.get(task.id)
    assert (done.status, done.attempt) == (SUCCEEDED, 1)


@SHORT_LEASE
async def test_a_worker_stopped_cleanly_hands_back_without_counting(
    admin: Client, start_worker: WorkerFactory
) -> None:
    task = await admin.create("sleep", {"seconds": 2})
    execution = admin.execute_call(task.id)

    for _ in range(3):  # more clean stops than the two losses allowed
        worker = await start_worker("--demo", "--slots", "1", "--grace", "0.1")
        await asyncio.to_thread(worker.wait_for_log, rf"task {task.id} \(sleep\) started", 15)
        worker.terminate()
        requeued = (await read_until(execution, of_type("REQUEUED")))[-1]
        assert requeued.message == "handed back by worker"
        assert await asyncio.to_thread(worker.wait, 30) == 0, worker.log
    await start_worker("--demo", "--slots", "1")
    rest = await read_rest(execution)

    assert kinds(rest)[0] == "STARTED" and kinds(rest)[-1] == "SUCCEEDED"
    assert "REQUEUED" not in kinds(rest)
    assert (await admin.get(task.id)).status == SUCCEEDED


# -- oversized outputs -------------------------------------------------------------


async def run_on_one_stream(
    admin: Client, start_worker: WorkerFactory
) -> tuple[tasks_pb2.Task, str]:
    """An oversized output's task, failed, and the error of it; AssertionError
    unless the worker that ran it also runs the next task on the same stream."""
    worker = await start_worker(POISON_WORKER)
    big = await admin.create("huge", {"bytes": OVERSIZED})
    events = await admin.execute(big.id)
    assert kinds(events) == ["QUEUED", "STARTED", "FAILED"]
    after = await admin.create("small", {"n": 1})
    next_events = await admin.execute(after.id)

    assert kinds(next_events)[-1] == "SUCCEEDED"
    # A new stream would have a new worker id.
    started = [e.worker_id for e in events + next_events if e.type == STARTED]
    assert started == [worker.worker_id, worker.worker_id]
    assert "connection to" not in worker.log and worker.returncode is None, worker.log
    failed = await admin.get(big.id)
    assert (failed.status, failed.attempt) == (FAILED, 1)
    return failed, events[-1].message


async def test_an_output_over_the_payload_limit_fails_and_the_worker_stays(
    admin: Client, start_worker: WorkerFactory
) -> None:
    failed, message = await run_on_one_stream(admin, start_worker)

    error = (
        f"output is {OVERSIZED + BLOB_JSON_OVERHEAD} bytes, "
        f"over the limit of {DEFAULT_PAYLOAD_LIMIT}"
    )
    assert failed.error == message == error


@pytest.mark.server_env(ORCHESTRATOR_MAX_PAYLOAD_BYTES=str(64 * 1024 * 1024))
async def test_an_output_over_the_message_limit_fails_and_the_worker_stays(
    admin: Client, start_worker: WorkerFactory
) -> None:
    # The server would store it, but no gRPC message can carry it.
    failed, message = await run_on_one_stream(admin, start_worker)

    assert failed.error == message
    match = re.fullmatch(r"output is (\d+) bytes, over the limit of (\d+)", message)
    assert match, message
    assert int(match[1]) > OVERSIZED and int(match[2]) == MESSAGE_LIMIT


async def test_the_server_refuses_an_oversized_output_in_the_same_words(admin: Client) -> None:
    first = await admin.create("raw.big", start=True)
    second = await admin.create("raw.big", start=True)
    token = await admin.worker_token("raw-big")
    worker = RawWorker(admin, (("authorization", f"Bearer {token}"),))
    welcome = await worker.hello("raw-big", ["raw.big"])
    assert (welcome.max_payload_bytes, welcome.max_message_bytes) == (
        DEFAULT_PAYLOAD_LIMIT,
        MESSAGE_LIMIT,
    )

    # A worker that does not heed the welcome sends it anyway.
    size = 2 * DEFAULT_PAYLOAD_LIMIT
    await worker.send(completion(await worker.assignment(), {"blob": "x" * size}))
    # The stream stays up: the freed slot takes the next task.
    following = await worker.assignment()
    assert following.task_id == second.id
    await worker.send(completion(following, {"small": True}))

    error = (
        f"output is {size + BLOB_JSON_OVERHEAD} bytes, over the limit of {DEFAULT_PAYLOAD_LIMIT}"
    )
    failed = await admin.get(first.id)
    assert (failed.status, failed.error) == (FAILED, error)
    assert kinds(await admin.watch(second.id))[-1] == "SUCCEEDED"
    await worker.close()
