"""Schedules end to end where timing and bookkeeping are easy to get wrong:
an every-second schedule with no catch-up window misses no second, a time
whose task was deleted is not fired again by a backfill, a backfill longer
than one transaction fires each time once, and a disabled user's schedules
stop firing (and fire again once the user is enabled)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.proto import auth_pb2, tasks_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, connect
from tests.e2e.schedule_helpers import (
    ALLOW_ALL,
    Schedules,
    fired_tasks,
    fired_times,
    steps,
    template,
    unique_name,
    when,
)
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
# A type no worker serves: fired tasks stay queued, and no worker is needed.
HELD = "held-back"


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


@pytest.fixture
def schedules(admin: Client) -> Schedules:
    return Schedules(admin)


async def _count(client: Client, schedule: Any, count: int) -> bool:
    return len(await fired_tasks(client, schedule)) >= count


# The fire loop's timing is the engine's; its SQL on PostgreSQL is
# covered by the two-replica test.
@pytest.mark.any_database
async def test_an_every_second_schedule_without_a_window_misses_no_second(
    admin: Client, schedules: Schedules
) -> None:
    """A window of 0 skips missed times; a loop falling a little behind
    each round used to find two times due at once and skip the earlier."""
    schedule = await schedules.create(
        interval_seconds=1, task=template(HELD), overlap=ALLOW_ALL, catchup_window_seconds=0
    )
    created = when(schedule.created_at)
    await wait_until(lambda: _count(admin, schedule, 12), timeout=30)
    await schedules.pause(schedule.id)
    times = await fired_times(admin, schedule)
    assert times[0] == created + SECOND
    assert steps(times) == [SECOND] * (len(times) - 1), times
    await schedules.delete(schedule.id)


async def test_a_backfill_does_not_fire_again_a_time_whose_task_was_deleted(
    admin: Client, schedules: Schedules
) -> None:
    schedule = await schedules.create(cron="* * * * *", task=template(HELD), paused=True)
    end = datetime.now(UTC)
    start = end - MINUTE * 3
    fires = await schedules.backfill(schedule.id, start, end)
    assert len(fires) == 3
    for fire in fires:
        await admin.cancel(fire.task_id)
        await admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=fire.task_id),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
    assert await fired_times(admin, schedule) == []
    assert await schedules.backfill(schedule.id, start, end) == []
    await schedules.delete(schedule.id)


async def test_a_backfill_longer_than_a_transaction_fires_each_time_once(
    admin: Client, schedules: Schedules
) -> None:
    schedule = await schedules.create(cron="* * * * *", task=template(HELD), paused=True)
    end = datetime.now(UTC)
    start = end - MINUTE * 250
    fires = await schedules.backfill(schedule.id, start, end)
    times = [when(fire.scheduled_at) for fire in fires]
    assert len(times) == 250 and steps(times) == [MINUTE] * 249
    assert await fired_times(admin, schedule) == times
    assert await schedules.backfill(schedule.id, start - MINUTE * 2, end) != []
    assert len(await fired_times(admin, schedule)) == 252
    await schedules.delete(schedule.id)


async def _set_disabled(admin: Client, user_id: str, disabled: bool) -> None:
    if disabled:
        await admin.auth.DisableUser(
            auth_pb2.DisableUserRequest(id=user_id), metadata=admin.metadata, timeout=CALL_TIMEOUT
        )
    else:
        await admin.auth.EnableUser(
            auth_pb2.EnableUserRequest(id=user_id), metadata=admin.metadata, timeout=CALL_TIMEOUT
        )


async def test_a_disabled_users_schedules_do_not_fire(
    admin: Client, orchestrator: ServerProcess, schedules: Schedules
) -> None:
    username = unique_name("off")
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username=username, password="member-password-1", role="member"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    async with connect(orchestrator, username, "member-password-1") as member:
        theirs = await Schedules(member).create(
            interval_seconds=1, task=template(HELD), overlap=ALLOW_ALL
        )
    await wait_until(lambda: _count(admin, theirs, 2), timeout=20)
    await _set_disabled(admin, user.id, True)
    # The admin's own every-second schedule shows the loop going on.
    control = await schedules.create(interval_seconds=1, task=template(HELD), overlap=ALLOW_ALL)
    await wait_until(lambda: _count(admin, control, 1), timeout=20)
    before = len(await fired_tasks(admin, theirs))  # a fire under way has committed by now
    await wait_until(lambda: _count(admin, control, 4), timeout=20)
    assert len(await fired_tasks(admin, theirs)) == before

    await _set_disabled(admin, user.id, False)
    await wait_until(lambda: _count(admin, theirs, before + 2), timeout=20)
    await schedules.delete(theirs.id)
    await schedules.delete(control.id)
