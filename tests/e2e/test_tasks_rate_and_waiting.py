"""Rate buckets with the real server and workers (starts evenly spaced, by the
server's own start times), and GetTask saying why a queued task waits."""

from __future__ import annotations

import asyncio
import bisect

import pytest
from google.protobuf import duration_pb2

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import Client, WorkerFactory, read_until
from tests.e2e.limits_helpers import keyed, seconds
from tests.support.database import backend

SECOND = tasks_pb2.RATE_LIMIT_PERIOD_SECOND
HOUR = tasks_pb2.RATE_LIMIT_PERIOD_HOUR
RUNNING = tasks_pb2.TASK_STATUS_RUNNING
# The server knows only its own workers when replicas may share the database.
WHERE = " on this replica" if backend() == "postgres" else ""


async def test_a_bucket_of_five_a_second_starts_fifty_tasks_in_about_ten_seconds(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "50")
    tasks = [
        await admin.create(
            "echo",
            {"i": i},
            start=True,
            rate_limit_bucket="api",
            rate_limit=5,
            rate_limit_period=SECOND,
        )
        for i in range(50)
    ]
    await asyncio.gather(*(admin.watch(t.id) for t in tasks))
    finals = [await admin.get(t.id) for t in tasks]
    assert {t.status for t in finals} == {tasks_pb2.TASK_STATUS_SUCCEEDED}
    starts = sorted(seconds(t.started_at) for t in finals)
    for index, start in enumerate(starts):
        in_window = bisect.bisect_left(starts, start + 1.0) - index
        assert in_window <= 5, f"{in_window} starts within a second of {start}"
    assert 8.5 <= starts[-1] - starts[0] <= 14, starts


async def waiting(client: Client, task_id: str) -> tuple[str, str]:
    task = await client.get(task_id)
    assert task.status == tasks_pb2.TASK_STATUS_QUEUED
    return tasks_pb2.TaskWaitReason.Name(task.wait_reason), task.waiting


async def started(client: Client, task_id: str) -> None:
    await read_until(client.watch_call(task_id), lambda e: e.status == RUNNING)


async def test_get_task_says_why_a_task_waits(admin: Client, start_worker: WorkerFactory) -> None:
    later = await admin.create("echo", {}, start=True, delay=duration_pb2.Duration(seconds=3600))
    reason, text = await waiting(admin, later.id)
    assert reason == "TASK_WAIT_REASON_NOT_BEFORE"
    assert text.startswith("not before 20") and text.endswith("Z")

    unserved = await admin.create("nobody-serves-this", {}, start=True)
    assert await waiting(admin, unserved.id) == (
        "TASK_WAIT_REASON_NO_WORKER",
        f"no connected worker serves type nobody-serves-this{WHERE}",
    )

    await start_worker("--demo", "--slots", "2")
    holder = await keyed(admin, "sleep", {"seconds": 30}, "k", 1)
    await started(admin, holder.id)
    second = await keyed(admin, "sleep", {"seconds": 30}, "k", 1)
    assert await waiting(admin, second.id) == (
        "TASK_WAIT_REASON_CONCURRENCY_LIMIT",
        "concurrency key k has 1 of 1 running",
    )

    bucket = {"rate_limit_bucket": "slow", "rate_limit": 1, "rate_limit_period": HOUR}
    first_of_hour = await admin.create("sleep", {"seconds": 30}, start=True, **bucket)
    await started(admin, first_of_hour.id)
    next_of_hour = await admin.create("echo", {}, start=True, **bucket)
    reason, text = await waiting(admin, next_of_hour.id)
    assert reason == "TASK_WAIT_REASON_RATE_LIMIT"
    assert text.startswith("rate bucket slow next allows a start at 20"), text

    # Both slots are taken (the key's task and the bucket's first).
    busy = await admin.create("echo", {}, start=True)
    assert await waiting(admin, busy.id) == (
        "TASK_WAIT_REASON_NO_FREE_SLOT",
        f"all 2 slots of the workers serving type echo{WHERE} are busy",
    )
    # The sleepers would otherwise hold the worker through the server's
    # shutdown grace.
    for running in (second, holder, first_of_hour):
        await admin.cancel(running.id)


@pytest.mark.server_env(ORCHESTRATOR_RETRY_BASE_SECONDS="600", ORCHESTRATOR_RETRY_MAX_SECONDS="600")
async def test_get_task_says_a_failed_attempt_waits_for_its_retry(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "2")
    task = await admin.create("fail", {}, start=True, max_attempts=3)
    await read_until(
        admin.watch_call(task.id),
        lambda e: e.type == tasks_pb2.TASK_EVENT_TYPE_RETRYING,
    )
    reason, text = await waiting(admin, task.id)
    assert reason == "TASK_WAIT_REASON_RETRY_BACKOFF"
    assert text.startswith("retrying after 20"), text
    await admin.cancel(task.id)


async def test_a_cancel_oldest_task_never_waits_for_its_key(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "1")
    oldest = tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_OLDEST
    holder = await keyed(admin, "sleep", {"seconds": 30}, "k", 1, concurrency_strategy=oldest)
    await started(admin, holder.id)
    newer = await keyed(admin, "echo", {}, "k", 1, concurrency_strategy=oldest)
    # Its key is full, but it would make room: what holds it is the slot.
    assert await waiting(admin, newer.id) == (
        "TASK_WAIT_REASON_NO_FREE_SLOT",
        f"all 1 slots of the workers serving type echo{WHERE} are busy",
    )
    await admin.cancel(holder.id)
    await started(admin, newer.id)
