"""Catch-up after downtime: the server stops, scheduled times pass, it starts
again. With a catch-up window of 0 only the latest missed time fires; with
a window wider than the outage every missed time fires, in order; neither
fires anything twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.proto import schedules_pb2
from tests.e2e.conftest import SERVER_ENV, Client, connect
from tests.e2e.schedule_helpers import ALLOW_ALL, Schedules, fired_tasks, steps, template, when
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess

SECOND = timedelta(seconds=1)
DOWNTIME_SECONDS = 4


def now() -> datetime:
    return datetime.now(UTC)


# The fire loop's timing is the engine's; its SQL on PostgreSQL is
# covered by the two-replica test.
@pytest.mark.any_database
async def test_missed_times_fire_by_the_catch_up_window_after_a_restart(
    database_url: str,
) -> None:
    first = ServerProcess(database_url, env=SERVER_ENV).start()
    try:
        async with connect(first) as admin:
            schedules = Schedules(admin)
            # A type no worker serves, and ALLOW_ALL: every fire shows.
            latest = await schedules.create(
                interval_seconds=1, task=template("held-back"), overlap=ALLOW_ALL
            )
            every = await schedules.create(
                interval_seconds=1,
                task=template("held-back"),
                overlap=ALLOW_ALL,
                catchup_window_seconds=60,
            )
            for schedule in (latest, every):
                await wait_until(lambda s=schedule: _fired(admin, s, 2), timeout=15)
    finally:
        assert first.stop() == 0
        print("--- first server log:", first.log, sep="\n")
    stopped_at = now()
    await asyncio.sleep(DOWNTIME_SECONDS)  # the outage: scheduled times pass unseen

    restarted_at = now()
    second = ServerProcess(database_url, env=SERVER_ENV).start()
    try:
        async with connect(second) as admin:
            schedules = Schedules(admin)
            for schedule in (latest, every):
                await wait_until(
                    lambda s=schedule: _fired_after(admin, s, restarted_at, 2), timeout=15
                )
                await schedules.pause(schedule.id)
            latest_tasks = await fired_tasks(admin, latest)
            every_tasks = await fired_tasks(admin, every)
    finally:
        second.stop()
        print("--- second server log:", second.log, sep="\n")

    times = [when(t.scheduled_at) for t in latest_tasks]
    before = [t for t in times if t <= stopped_at]
    after = times[len(before) :]
    assert steps(before) == [SECOND] * (len(before) - 1)
    # Of the times missed during the outage only the latest fired, once the
    # server was back; from there on, one a second.
    assert after[0] > restarted_at - SECOND, (stopped_at, restarted_at, times)
    assert after[0] - before[-1] >= (DOWNTIME_SECONDS - 1) * SECOND
    assert steps(after) == [SECOND] * (len(after) - 1)

    times = [when(t.scheduled_at) for t in every_tasks]
    assert times[0] == when(every.created_at) + SECOND
    assert steps(times) == [SECOND] * (len(times) - 1), times
    missed = [t for t in every_tasks if stopped_at < when(t.scheduled_at) < restarted_at]
    assert len(missed) >= DOWNTIME_SECONDS - 1
    assert all(when(t.created_at) >= restarted_at for t in missed)


async def _fired(admin: Client, schedule: schedules_pb2.Schedule, count: int) -> bool:
    return len(await fired_tasks(admin, schedule)) >= count


async def _fired_after(
    admin: Client, schedule: schedules_pb2.Schedule, after: datetime, count: int
) -> bool:
    tasks = await fired_tasks(admin, schedule)
    return len([t for t in tasks if when(t.scheduled_at) > after]) >= count
