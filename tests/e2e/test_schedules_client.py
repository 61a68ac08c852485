"""Schedules through the client SDK against a real server and demo worker:
typed values, names resolved, fires that start real tasks and runs, and
the server's field violations for bad specs."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchestrator import errors
from orchestrator.client import (
    Client,
    Fire,
    Overlap,
    RunStatus,
    Schedule,
    SyncClient,
    TaskSpec,
    TaskStatus,
)
from tests.e2e.conftest import WorkerProcess
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

# Long enough for a loaded CI machine; an every-second schedule fires well within it.
FIRE_TIMEOUT = 30.0

ECHO_TWICE = {
    "nodes": [
        {"id": "first", "type": "echo", "input_expression": "{'n': input.n}"},
        {"id": "second", "type": "echo", "input_expression": "{'n': nodes.first.output.n}"},
    ],
    "edges": [{"source": "first", "target": "second"}],
}


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    # Each test's schedules have names of their own and are looked up by id.
    return shared_orchestrator


@pytest.fixture
async def client(orchestrator: ServerProcess, demo_worker: WorkerProcess) -> AsyncIterator[Client]:
    assert orchestrator.address
    async with Client(orchestrator.address) as admin:
        await admin.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        yield admin


async def until(
    read: Callable[[], Awaitable[Schedule]], ready: Callable[[Schedule], bool]
) -> Schedule:
    """The schedule once `ready` says so, read every 0.1 s until then (no
    stream tells of fires)."""
    async with asyncio.timeout(FIRE_TIMEOUT):
        while True:
            schedule = await read()
            if ready(schedule):
                return schedule
            await asyncio.sleep(0.1)


async def test_an_interval_schedule_fires_its_task_pauses_and_resumes(client: Client) -> None:
    before = datetime.now(UTC)
    created = await client.schedules.create(
        "sdk-every-second",
        interval=timedelta(seconds=1),
        task=TaskSpec(
            "echo",
            {"n": 7},
            title="tick",
            labels={"suite": "schedules"},
            concurrency_key="ticks",
            concurrency_limit=1,
        ),
        note="for the SDK test",
    )

    assert isinstance(created, Schedule)
    assert created.interval_seconds == 1 and created.cron == ""
    assert created.time_zone == "UTC" and created.overlap is Overlap.SKIP
    assert created.task is not None and created.task.type == "echo"
    assert created.task.input == {"n": 7} and created.task.title == "tick"
    assert (created.task.concurrency_key, created.task.concurrency_limit) == ("ticks", 1)
    assert created.note == "for the SDK test" and not created.paused
    upcoming = created.next_fire_times
    assert len(upcoming) >= 2 and list(upcoming) == sorted(upcoming)
    assert before < upcoming[0] <= datetime.now(UTC) + timedelta(seconds=1)
    assert upcoming[1] - upcoming[0] == timedelta(seconds=1)

    fired = await until(lambda: client.schedules.get(created.id), lambda s: bool(s.last_task_id))
    assert fired.last_fired_at is not None and fired.last_fired_at >= upcoming[0]
    task = await client.tasks.wait(fired.last_task_id)
    assert (task.type, task.title, task.labels) == ("echo", "tick", {"suite": "schedules"})
    assert task.status is TaskStatus.SUCCEEDED and task.output == {"n": 7}
    assert (task.schedule_id, task.scheduled_at) == (created.id, fired.last_fired_at)
    assert task.concurrency_key == "ticks"

    paused = await client.schedules.pause(created.id, "quiet please")
    assert paused.paused and paused.note == "quiet please"
    assert paused.next_fire_times == ()
    # Nothing fires once pause has answered: two more intervals go by without a fire.
    await asyncio.sleep(2.5)
    still = await client.schedules.get(created.id)
    assert still.last_fired_at == paused.last_fired_at
    assert still.last_task_id == paused.last_task_id

    resumed = await client.schedules.resume(created.id, "go on")
    assert not resumed.paused and resumed.note == "go on"
    assert resumed.next_fire_times and resumed.next_fire_times[0] > paused.updated_at
    await client.schedules.delete(created.id)


async def test_a_cron_schedule_runs_on_its_zones_wall_clock_and_backfills(client: Client) -> None:
    zone = ZoneInfo("Asia/Kolkata")
    created = await client.schedules.create(
        "sdk-daily", cron="15 9 * * *", time_zone="Asia/Kolkata", task=TaskSpec("echo", {"d": 1})
    )

    assert created.cron == "15 9 * * *" and created.interval_seconds == 0
    local = [t.astimezone(zone) for t in created.next_fire_times]
    assert local and all((t.hour, t.minute) == (9, 15) for t in local)
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(local))
    listed = [s async for s in client.schedules.list_all() if s.id == created.id]
    assert [s.next_fire_times for s in listed] == [created.next_fire_times]
    assert (await client.schedules.find("sdk-daily")).id == created.id

    now = datetime.now(UTC)
    fires = await client.schedules.backfill(created.id, now - timedelta(days=3), now)

    # One fire per 09:15 in the last three days, in order, each with its task.
    assert len(fires) == 3 and all(isinstance(f, Fire) for f in fires)
    times = [f.scheduled_at for f in fires]
    assert times == sorted(times) and all(t is not None for t in times)
    assert all((t.astimezone(zone).hour, t.astimezone(zone).minute) == (9, 15) for t in times if t)
    for fire in fires:
        task = await client.tasks.wait(fire.task_id)
        assert task.type == "echo" and task.status is TaskStatus.SUCCEEDED
    again = await client.schedules.backfill(created.id, now - timedelta(days=3), now)
    assert again == []
    await client.schedules.delete(created.id)


async def test_a_workflow_schedule_by_name_is_triggered_now(client: Client) -> None:
    workflow = await client.workflows.create("sdk-scheduled-flow", ECHO_TWICE)
    created = await client.schedules.create(
        "sdk-hourly-flow",
        cron="@hourly",
        workflow="sdk-scheduled-flow",
        input={"n": 5},
        overlap="allow_all",
        jitter=30,
        catchup_window=timedelta(hours=1),
    )
    assert created.workflow_id == workflow.id and created.task is None
    assert created.input == {"n": 5} and created.overlap is Overlap.ALLOW_ALL
    assert (created.jitter_seconds, created.catchup_window_seconds) == (30, 3600)

    before = datetime.now(UTC)
    fire = await client.schedules.trigger(created.id)

    assert fire.run_id and not fire.task_id
    assert fire.scheduled_at is not None and fire.scheduled_at >= before - timedelta(seconds=1)
    run = await client.runs.wait(fire.run_id)
    assert run.workflow_id == workflow.id and run.input == {"n": 5}
    assert (run.schedule_id, run.scheduled_at) == (created.id, fire.scheduled_at)
    assert run.status is RunStatus.SUCCEEDED and run.node("second").output == {"n": 5}
    await client.schedules.delete(created.id)


async def test_update_replaces_the_spec(client: Client) -> None:
    created = await client.schedules.create(
        "sdk-to-update", interval=3600, task=TaskSpec("echo"), paused=True, note="held"
    )
    assert created.paused and created.next_fire_times == ()

    updated = await client.schedules.update(
        created.id, "sdk-updated", cron="0 12 * * *", task=TaskSpec("echo", {"v": 2})
    )

    assert (updated.name, updated.cron, updated.interval_seconds) == (
        "sdk-updated",
        "0 12 * * *",
        0,
    )
    assert updated.task is not None and updated.task.input == {"v": 2}
    assert updated.paused and updated.note == "held"
    assert (await client.schedules.get(created.id)) == updated
    await client.schedules.delete(created.id)


async def test_a_deleted_schedule_is_gone(client: Client) -> None:
    created = await client.schedules.create(
        "sdk-to-delete", interval=60, task=TaskSpec("echo"), paused=True
    )

    await client.schedules.delete(created.id)

    with pytest.raises(errors.NotFound):
        await client.schedules.get(created.id)
    assert created.id not in [s.id async for s in client.schedules.list_all()]
    with pytest.raises(errors.NotFound):
        await client.schedules.trigger(created.id)


async def test_bad_specs_are_refused_field_by_field_and_nothing_is_kept(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        await client.schedules.create(
            "sdk-bad",
            cron="61 * * * *",
            time_zone="Mars/Olympus_Mons",
            task=TaskSpec("echo"),
            jitter=-1,
        )
    fields = {v.field for v in caught.value.violations}
    assert {"cron", "time_zone", "jitter_seconds"} <= fields

    with pytest.raises(errors.InvalidArgument) as neither:
        await client.schedules.create("sdk-bad", interval=60)
    assert "task" in {v.field for v in neither.value.violations}
    with pytest.raises(errors.InvalidArgument) as both:
        await client.schedules.create("sdk-bad", cron="@daily", interval=60, task=TaskSpec("echo"))
    assert both.value.violations
    with pytest.raises(errors.InvalidArgument) as keyed:
        await client.schedules.create(
            "sdk-bad", interval=60, task=TaskSpec("echo", idempotency_key="once")
        )
    assert [v.field for v in keyed.value.violations] == ["task.idempotency_key"]
    with pytest.raises(errors.NotFound, match="no workflow is named 'no-such-flow'"):
        await client.schedules.create("sdk-bad", interval=60, workflow="no-such-flow")
    assert "sdk-bad" not in [s.name async for s in client.schedules.list_all()]

    kept = await client.schedules.create("sdk-taken", interval=60, task=TaskSpec("echo"))
    with pytest.raises(errors.AlreadyExists):
        await client.schedules.create("sdk-taken", interval=60, task=TaskSpec("echo"))
    await client.schedules.delete(kept.id)


async def test_another_users_schedule_is_not_found(
    client: Client, orchestrator: ServerProcess
) -> None:
    created = await client.schedules.create(
        "sdk-admins-own", interval=60, task=TaskSpec("echo"), paused=True
    )
    await client.users.create("schedule-member", "member-password-1", "member")
    assert orchestrator.address
    async with Client(orchestrator.address) as member:
        await member.login("schedule-member", "member-password-1")
        for call in (
            member.schedules.get,
            member.schedules.trigger,
            member.schedules.pause,
            member.schedules.delete,
        ):
            with pytest.raises(errors.NotFound):
                await call(created.id)
        assert [s async for s in member.schedules.list_all()] == []
    assert not (await client.schedules.get(created.id)).last_task_id
    await client.schedules.delete(created.id)


def test_the_blocking_client_triggers_and_pauses(
    orchestrator: ServerProcess, demo_worker: WorkerProcess
) -> None:
    with SyncClient(orchestrator.address) as client:
        client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        created = client.create_schedule("sync-weekly", cron="@weekly", task=TaskSpec("echo"))
        fire = client.trigger_schedule(created.id)
        assert client.get_task(fire.task_id).type == "echo"
        assert client.pause_schedule(created.id, "done").paused
        assert not client.resume_schedule(created.id).paused
        client.delete_schedule(created.id)
        with pytest.raises(errors.NotFound):
            client.get_schedule(created.id)
