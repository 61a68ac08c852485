"""Retention in a real server: with ORCHESTRATOR_RETENTION_DAYS very small,
finished tasks disappear on their own once they are that old, while tasks
that have not finished stay, however old."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import Client, WorkerFactory, fields_of, read_rest, refused
from tests.e2e.schedule_helpers import Schedules, template
from tests.support.grpc import status_code, wait_until
from tests.support.server import ServerProcess

# 1.728 s: the sweep then runs every second (its period is half the age, at
# least one second), so a finished task goes 1.7-2.7 s after it finished.
RETENTION_DAYS = 0.00002
AGE = timedelta(days=RETENTION_DAYS)


async def gone(client: Client, task_id: str) -> datetime | None:
    """When GetTask first answered NOT_FOUND, or None while it still finds it."""
    try:
        await client.get(task_id)
    except grpc.aio.AioRpcError as error:
        assert status_code(error) == grpc.StatusCode.NOT_FOUND, error
        return datetime.now(UTC)
    return None


@pytest.mark.server_env(ORCHESTRATOR_RETENTION_DAYS=str(RETENTION_DAYS))
async def test_finished_tasks_disappear_unfinished_ones_stay(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    pending = await admin.create("echo", {"stays": "pending"})
    queued = await admin.create("nobody-serves-this", {"stays": "queued"}, start=True)
    await start_worker("--demo")
    succeeded = await admin.create("echo", {"n": 1})
    events = await admin.execute(succeeded.id)
    assert events[-1].type == tasks_pb2.TASK_EVENT_TYPE_SUCCEEDED
    cancelled = await admin.cancel((await admin.create("echo", {"n": 2})).id)
    finished = [await admin.get(succeeded.id), cancelled]
    assert all(task.HasField("finished_at") for task in finished)

    for task in finished:
        deleted_at = await wait_until(functools.partial(gone, admin, task.id), timeout=30)
        # Not before its time: the age counts from when it finished.
        assert deleted_at >= task.finished_at.ToDatetime(UTC) + AGE
    orchestrator.wait_for_log("deleted finished tasks and workflow runs past retention")

    # Older than the age by now, but not finished: kept.
    assert time.time() - pending.created_at.ToSeconds() > AGE.total_seconds()
    assert (await admin.get(pending.id)).status == tasks_pb2.TASK_STATUS_PENDING
    assert (await admin.get(queued.id)).status == tasks_pb2.TASK_STATUS_QUEUED
    # A deleted task is gone for its followers too.
    error = await refused(read_rest(admin.watch_call(succeeded.id)))
    assert status_code(error) == grpc.StatusCode.NOT_FOUND
    assert {succeeded.id, cancelled.id}.isdisjoint(await admin.list_ids())


@pytest.mark.server_env(ORCHESTRATOR_RETENTION_DAYS="1")
async def test_a_backfill_older_than_the_retention_age_is_refused(admin: Client) -> None:
    """Fires that old are forgotten with their tasks: a backfill could not
    tell which of those times already ran."""
    schedules = Schedules(admin)
    schedule = await schedules.create(cron="0 * * * *", task=template("echo"))
    now = datetime.now(UTC)
    error = await refused(schedules.backfill(schedule.id, now - timedelta(days=2), now))
    assert status_code(error) == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == ["start_at"]
    assert await admin.list_ids() == []
    # Within the age it goes ahead: one fire per hour.
    fires = await schedules.backfill(schedule.id, now - timedelta(hours=3), now)
    assert len(fires) == 3
