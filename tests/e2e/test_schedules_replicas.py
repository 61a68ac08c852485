"""Two replicas on one PostgreSQL, both running the fire loop: every-second
schedules over 20 s fire each scheduled time exactly once, with no gap,
whichever replica gets to it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from orchestrator.proto import schedules_pb2
from tests.e2e.conftest import SERVER_ENV, Client, connect
from tests.e2e.schedule_helpers import ALLOW_ALL, Schedules, fired_tasks, steps, template, when
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres

SECOND = timedelta(seconds=1)
SECONDS = 20
# Each fire logs "schedule fired" at DEBUG: which replica fired what.
DEBUG = {"ORCHESTRATOR_LOG_LEVEL": "DEBUG"}


@pytest.fixture
def second_replica(database_url: str, orchestrator: ServerProcess) -> Iterator[ServerProcess]:
    """Another server on the same database, started after the first one
    (which ran the migrations)."""
    process = ServerProcess(
        database_url, env={**SERVER_ENV, **DEBUG, "ORCHESTRATOR_REPLICA_ID": "b"}
    )
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- second replica log:", process.log, sep="\n")


@pytest.mark.server_env(**DEBUG)
async def test_two_replicas_fire_each_scheduled_time_exactly_once(
    orchestrator: ServerProcess, second_replica: ServerProcess, admin: Client
) -> None:
    async with connect(second_replica) as other:
        # Some created on each replica; a type no worker serves and ALLOW_ALL,
        # so every fire shows as a queued task; a catch-up window so a late
        # round on a busy machine still fires every time.
        spec = {
            "interval_seconds": 1,
            "task": template("held-back"),
            "overlap": ALLOW_ALL,
            "catchup_window_seconds": 30,
        }
        created = [
            *[await Schedules(admin).create(**spec) for _ in range(2)],
            *[await Schedules(other).create(**spec) for _ in range(2)],
        ]
        for schedule in created:
            await wait_until(lambda s=schedule: _fired(admin, s, SECONDS), timeout=SECONDS * 3)
        await asyncio.gather(*(Schedules(admin).pause(s.id) for s in created))

    for schedule in created:
        tasks = await fired_tasks(admin, schedule)
        times = [when(t.scheduled_at) for t in tasks]
        assert len(times) >= SECONDS
        assert times[0] == when(schedule.created_at) + SECOND
        assert steps(times) == [SECOND] * (len(times) - 1), times
    # Both loops took part: the exactly-once above held under contention.
    for replica in (orchestrator, second_replica):
        assert "schedule fired" in replica.log


async def _fired(admin: Client, schedule: schedules_pb2.Schedule, count: int) -> bool:
    return len(await fired_tasks(admin, schedule)) >= count
