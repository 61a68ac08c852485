"""ScheduleService end to end (DESIGN §4 "Schedules"), on one shared server
with the demo worker: the spec as stored and shown, every bad field named,
owners' isolation, an every-second schedule firing each second once, pause
and resume, backfill and trigger, the skip overlap policy, a workflow
schedule, and a schedule whose workflow is deleted."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from orchestrator.proto import auth_pb2, schedules_pb2, tasks_pb2, workflows_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, connect, fields_of, refused, to_struct
from tests.e2e.schedule_helpers import (
    ALLOW_ALL,
    SKIP,
    Schedules,
    fired_tasks,
    fired_times,
    stamp,
    steps,
    template,
    unique_name,
    when,
)
from tests.e2e.workflow_helpers import Flows, node
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess

SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)
# How late a fire may come on a loaded test machine.
LATE = timedelta(seconds=1)


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


@pytest.fixture
def schedules(admin: Client) -> Schedules:
    return Schedules(admin)


def now() -> datetime:
    return datetime.now(UTC)


# -- the spec -----------------------------------------------------------------------


async def test_a_schedule_is_stored_shown_listed_changed_and_deleted(
    schedules: Schedules,
) -> None:
    name = unique_name()
    created = await schedules.create(
        name,
        cron="*/5 9-17 * * MON-FRI",
        time_zone="Europe/Berlin",
        task=template("echo", {"n": 1}, title="report", priority=5),
        jitter_seconds=30,
        catchup_window_seconds=600,
        overlap=schedules_pb2.OVERLAP_POLICY_BUFFER_ONE,
    )
    assert created.id and created.name == name and not created.paused
    assert (created.cron, created.time_zone) == ("*/5 9-17 * * MON-FRI", "Europe/Berlin")
    assert created.task.title == "report" and created.task.type == "echo"
    assert created.task.priority == 5 and created.task.start
    assert created.overlap == schedules_pb2.OVERLAP_POLICY_BUFFER_ONE
    assert (created.jitter_seconds, created.catchup_window_seconds) == (30, 600)
    times = [when(t) for t in created.next_fire_times]
    assert len(times) == 5 and times == sorted(times) and times[0] > now()
    for time in times:
        local = time.astimezone(ZoneInfo("Europe/Berlin"))
        assert local.minute % 5 == 0 and 9 <= local.hour <= 17 and local.weekday() < 5, local

    assert await schedules.get(created.id) == created
    assert created.id in await schedules.list_ids()

    updated = await schedules.update(
        created.id, name=name, interval_seconds=3600, task=template("echo")
    )
    assert (updated.cron, updated.interval_seconds) == ("", 3600)
    assert updated.overlap == schedules_pb2.OVERLAP_POLICY_SKIP
    new_times = [when(t) for t in updated.next_fire_times]
    assert steps(new_times) == [timedelta(hours=1)] * 4
    assert now() < new_times[0] <= now() + timedelta(hours=1)

    await schedules.delete(created.id)
    assert (await refused(schedules.get(created.id))).code() == grpc.StatusCode.NOT_FOUND
    assert created.id not in await schedules.list_ids()


async def test_names_are_unique_per_owner_and_lists_come_in_pages(schedules: Schedules) -> None:
    first = await schedules.create(interval_seconds=3600, task=template(), paused=True)
    again = await refused(schedules.create(first.name, interval_seconds=60, task=template()))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    second = await schedules.create(interval_seconds=3600, task=template(), paused=True)
    taken = await refused(
        schedules.update(second.id, name=first.name, interval_seconds=60, task=template())
    )
    assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (await schedules.get(second.id)).interval_seconds == 3600

    seen: list[str] = []
    token = ""
    while True:
        page = await schedules.list(page_size=1, page_token=token)
        assert len(page.schedules) <= 1
        seen += [s.id for s in page.schedules]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) and {first.id, second.id} <= set(seen)
    for schedule in (first, second):
        await schedules.delete(schedule.id)


INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("bad cron", {"cron": "61 * * * *", "task": template()}, ["cron"]),
    ("cron of 4 fields", {"cron": "* * * *", "task": template()}, ["cron"]),
    (
        "unknown zone",
        {"cron": "@hourly", "time_zone": "Mars/Olympus", "task": template()},
        ["time_zone"],
    ),
    (
        "cron and interval",
        {"cron": "@daily", "interval_seconds": 60, "task": template()},
        ["interval_seconds"],
    ),
    ("neither cron nor interval", {"task": template()}, ["cron"]),
    ("bad task type", {"interval_seconds": 60, "task": template("1-not-a-type")}, ["task.type"]),
    ("task without type", {"interval_seconds": 60, "task": template("")}, ["task.type"]),
    (
        "template with a key",
        {"interval_seconds": 60, "task": template(idempotency_key="k")},
        ["task.idempotency_key"],
    ),
    (
        "template with a start time",
        {
            "interval_seconds": 60,
            "task": template(not_before=stamp(datetime(2030, 1, 1, tzinfo=UTC))),
        },
        ["task.not_before"],
    ),
    ("nothing to start", {"interval_seconds": 60}, ["task"]),
    (
        "unknown workflow",
        {"interval_seconds": 60, "workflow_id": "no-such-workflow"},
        ["workflow_id"],
    ),
    (
        "jitter of a whole interval",
        {"interval_seconds": 60, "jitter_seconds": 60, "task": template()},
        ["jitter_seconds"],
    ),
    (
        "jitter over an hour",
        {"cron": "@daily", "jitter_seconds": 3601, "task": template()},
        ["jitter_seconds"],
    ),
    ("a digit int() refuses", {"cron": "\u00b2 * * * *", "task": template()}, ["cron"]),
    (
        "cron wider than its column",
        {"cron": "0" + " " * 256 + "* * * *", "task": template()},
        ["cron"],
    ),
    (
        "zoneinfo's localtime",
        {"cron": "@daily", "time_zone": "localtime", "task": template()},
        ["time_zone"],
    ),
    (
        "zoneinfo's Factory",
        {"cron": "@daily", "time_zone": "Factory", "task": template()},
        ["time_zone"],
    ),
    (
        "negative catch-up",
        {"interval_seconds": 60, "catchup_window_seconds": -1, "task": template()},
        ["catchup_window_seconds"],
    ),
    (
        "end before start",
        {
            "interval_seconds": 60,
            "task": template(),
            "start_at": stamp(datetime(2030, 1, 2, tzinfo=UTC)),
            "end_at": stamp(datetime(2030, 1, 1, tzinfo=UTC)),
        },
        ["end_at"],
    ),
    (
        "input with a task",
        {"interval_seconds": 60, "task": template(), "input": {"a": 1}},
        ["input"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "fields"), [(s, f) for _, s, f in INVALID], ids=[c for c, _, _ in INVALID]
)
async def test_each_bad_field_is_named_and_nothing_is_stored(
    schedules: Schedules, spec: dict[str, Any], fields: list[str]
) -> None:
    if "input" in spec:
        spec = {**spec, "input": to_struct(spec["input"])}
    name = unique_name("invalid")
    error = await refused(schedules.create(name, **spec))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert fields_of(error) == fields, error.details()
    listed = await schedules.list(page_size=500)
    assert name not in [s.name for s in listed.schedules]


async def test_every_problem_at_once_and_an_update_names_them_under_schedule(
    schedules: Schedules,
) -> None:
    error = await refused(
        schedules.create("n" * 129, cron="nope", time_zone="Nowhere/Town", jitter_seconds=-1)
    )
    assert set(fields_of(error)) == {"name", "cron", "time_zone", "task", "jitter_seconds"}
    # A template the decoding refuses is named with the rest, not alone.
    bad_template = template(delay=Duration(seconds=-1))
    error = await refused(schedules.create("n" * 129, cron="nope", task=bad_template))
    assert set(fields_of(error)) == {"name", "cron", "task.delay"}
    schedule = await schedules.create(interval_seconds=3600, task=template(), paused=True)
    error = await refused(schedules.update(schedule.id, cron="* * *", task=template("")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields_of(error)) == {"schedule.cron", "schedule.task.type"}
    assert await schedules.get(schedule.id) == schedule
    await schedules.delete(schedule.id)


# -- owners -------------------------------------------------------------------------


async def _member(admin: Client, orchestrator: ServerProcess, username: str) -> Any:
    await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username=username, password="member-password-1", role="member"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    return connect(orchestrator, username, "member-password-1")


async def test_others_schedules_are_not_found_and_admins_see_all(
    admin: Client, orchestrator: ServerProcess, schedules: Schedules
) -> None:
    admin_flow = await Flows(admin).create(unique_name("wf"), [node("a")])
    owner_name, other_name = unique_name("owner"), unique_name("other")
    async with (
        await _member(admin, orchestrator, owner_name) as owner,
        await _member(admin, orchestrator, other_name) as other,
    ):
        mine = Schedules(owner)
        theirs = Schedules(other)
        schedule = await mine.create(interval_seconds=3600, task=template(), paused=True)
        calls = {
            "GetSchedule": theirs.get(schedule.id),
            "UpdateSchedule": theirs.update(schedule.id, interval_seconds=60, task=template()),
            "DeleteSchedule": theirs.delete(schedule.id),
            "PauseSchedule": theirs.pause(schedule.id),
            "ResumeSchedule": theirs.resume(schedule.id),
            "TriggerSchedule": theirs.trigger(schedule.id),
            "BackfillSchedule": theirs.backfill(schedule.id, now() - MINUTE * 5, now()),
        }
        for method, call in calls.items():
            error = await refused(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND, method
            assert schedule.id in (error.details() or ""), method
        unknown = await refused(theirs.get("no-such-schedule"))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
        assert await mine.get(schedule.id) == schedule  # nothing changed, nothing fired
        assert await fired_tasks(owner, schedule) == []
        assert schedule.id not in await theirs.list_ids()
        assert await schedules.get(schedule.id) == schedule
        assert schedule.id in await schedules.list_ids()
        # Nor can one schedule another's workflow.
        error = await refused(mine.create(interval_seconds=60, workflow_id=admin_flow.id))
        assert fields_of(error) == ["workflow_id"]


# -- firing -------------------------------------------------------------------------


# The fire loop's timing is the engine's; its SQL on PostgreSQL is
# covered by the two-replica test.
@pytest.mark.any_database
async def test_an_every_second_schedule_fires_each_second_once_pauses_and_resumes(
    admin: Client, schedules: Schedules, demo_worker: Any
) -> None:
    # ALLOW_ALL and a catch-up window: a slow machine's late round still
    # fires every time, so a gap would be the loop's fault.
    schedule = await schedules.create(
        interval_seconds=1, task=template(), overlap=ALLOW_ALL, catchup_window_seconds=30
    )
    created = when(schedule.created_at)
    assert when(schedule.next_fire_times[0]) == created + SECOND

    await wait_until(lambda: _at_least(admin, schedule, 8), timeout=20)
    paused = await schedules.pause(schedule.id, note="enough")
    paused_at = now()
    assert paused.paused and paused.note == "enough" and not paused.next_fire_times

    tasks = await fired_tasks(admin, schedule)
    times = [when(t.scheduled_at) for t in tasks]
    assert times[0] == created + SECOND
    assert steps(times) == [SECOND] * (len(times) - 1), times
    for task in tasks:
        assert task.schedule_id == schedule.id
        assert task.title == "echo" and task.type == "echo"
        assert when(task.scheduled_at) <= when(task.created_at) <= when(task.scheduled_at) + LATE
    one = await admin.get(tasks[0].id)
    assert one.schedule_id == schedule.id and one.scheduled_at == tasks[0].scheduled_at
    shown = await schedules.get(schedule.id)
    assert shown.last_task_id == tasks[-1].id and shown.last_fired_at == tasks[-1].scheduled_at

    # Paused: nothing more fires (2.5 intervals is plenty to see one).
    await asyncio.sleep(2.5)
    assert len(await fired_tasks(admin, schedule)) == len(tasks)

    resumed = await schedules.resume(schedule.id, note="again")
    resumed_at = now()
    assert not resumed.paused and resumed.note == "again"
    first_next = when(resumed.next_fire_times[0])
    assert resumed_at - SECOND < first_next <= resumed_at + SECOND
    await wait_until(lambda: _at_least(admin, schedule, len(tasks) + 3), timeout=15)
    await schedules.pause(schedule.id)
    after = [t for t in await fired_times(admin, schedule) if t > times[-1]]
    # No burst: the times missed while paused never run; resumed, it goes on
    # from the next time after the resume, one a second.
    assert all(t > paused_at + SECOND for t in after), (paused_at, after)
    assert after[0] == first_next
    assert steps(after) == [SECOND] * (len(after) - 1)
    await schedules.delete(schedule.id)


async def _at_least(client: Client, schedule: schedules_pb2.Schedule, count: int) -> bool:
    return len(await fired_tasks(client, schedule)) >= count


async def test_backfill_fires_each_missed_time_once_and_trigger_fires_now(
    admin: Client, schedules: Schedules
) -> None:
    # Paused, so only backfill and trigger fire it; a type no worker serves,
    # so its tasks stay queued and visible.
    schedule = await schedules.create(cron="* * * * *", task=template("held-back"), paused=True)
    end = now()
    start = end - MINUTE * 5
    fires = await schedules.backfill(schedule.id, start, end)
    expected = [(start + MINUTE * i).replace(second=0, microsecond=0) + MINUTE for i in range(5)]
    assert [when(f.scheduled_at) for f in fires] == expected
    assert await fired_times(admin, schedule) == expected
    for fire in fires:
        task = await admin.get(fire.task_id)
        assert task.status == tasks_pb2.TASK_STATUS_QUEUED
        assert (task.schedule_id, task.scheduled_at) == (schedule.id, fire.scheduled_at)

    assert await schedules.backfill(schedule.id, start, end) == []
    wider = await schedules.backfill(schedule.id, start - MINUTE * 2, end)
    assert [when(f.scheduled_at) for f in wider] == [expected[0] - MINUTE * 2, expected[0] - MINUTE]
    too_many = await refused(schedules.backfill(schedule.id, end - MINUTE * 1001, end))
    assert too_many.code() == grpc.StatusCode.INVALID_ARGUMENT
    backwards = await refused(schedules.backfill(schedule.id, end, start))
    assert fields_of(backwards) == ["end_at"]
    assert len(await fired_times(admin, schedule)) == 7

    before = now()
    fire = await schedules.trigger(schedule.id)
    assert before <= when(fire.scheduled_at) <= now()
    task = await admin.get(fire.task_id)
    assert (task.schedule_id, task.scheduled_at) == (schedule.id, fire.scheduled_at)
    assert task.status == tasks_pb2.TASK_STATUS_QUEUED
    shown = await schedules.get(schedule.id)
    assert shown.paused and shown.last_task_id == fire.task_id
    assert len(await fired_times(admin, schedule)) == 8
    await schedules.delete(schedule.id)


# The fire loop's timing is the engine's; its SQL on PostgreSQL is
# covered by the two-replica test.
@pytest.mark.any_database
async def test_skip_never_runs_two_at_once(
    admin: Client, schedules: Schedules, demo_worker: Any
) -> None:
    schedule = await schedules.create(
        interval_seconds=1, task=template("sleep", {"seconds": 2.2}), overlap=SKIP
    )
    await wait_until(lambda: _finished(admin, schedule, 2), timeout=30)
    await schedules.pause(schedule.id)
    tasks = await fired_tasks(admin, schedule)
    for earlier, later in itertools.pairwise(tasks):
        finished = await _end(admin, earlier)
        assert when(later.created_at) >= finished, (earlier, later)
    # Each of the 1-second times while one slept was skipped, not queued.
    assert min(steps([when(t.scheduled_at) for t in tasks])) >= 2 * SECOND
    for task in tasks:
        await _end(admin, task)
    await schedules.delete(schedule.id)


# The fire loop's timing is the engine's; its SQL on PostgreSQL is
# covered by the two-replica test.
@pytest.mark.any_database
async def test_buffer_one_runs_one_held_back_time_once_the_previous_ends(
    admin: Client, schedules: Schedules, demo_worker: Any
) -> None:
    schedule = await schedules.create(
        interval_seconds=1,
        task=template("sleep", {"seconds": 2.2}),
        overlap=schedules_pb2.OVERLAP_POLICY_BUFFER_ONE,
    )
    await wait_until(lambda: _finished(admin, schedule, 3), timeout=30)
    await schedules.pause(schedule.id)
    tasks = await fired_tasks(admin, schedule)
    for earlier, later in itertools.pairwise(tasks):
        finished = await _end(admin, earlier)
        # Its time came while the previous one ran; it waited for its end.
        assert when(later.scheduled_at) < finished <= when(later.created_at), (earlier, later)
    # The time right after the first was held back, not skipped; the one
    # after it, which came while that one waited, was skipped.
    times = [when(t.scheduled_at) for t in tasks]
    assert times[1] == times[0] + SECOND and times[2] >= times[1] + 2 * SECOND, times
    for task in tasks:
        await _end(admin, task)
    await schedules.delete(schedule.id)


async def test_cancel_other_cancels_the_previous_fire_for_the_next(
    admin: Client, schedules: Schedules, demo_worker: Any
) -> None:
    schedule = await schedules.create(
        interval_seconds=1,
        task=template("sleep", {"seconds": 30}),
        overlap=schedules_pb2.OVERLAP_POLICY_CANCEL_OTHER,
    )
    await wait_until(lambda: _at_least(admin, schedule, 3), timeout=20)
    await schedules.pause(schedule.id)
    tasks = await fired_tasks(admin, schedule)
    *replaced, last = tasks
    for task in replaced:
        assert task.status == tasks_pb2.TASK_STATUS_CANCELLED, task
        assert schedule.name in task.error
    assert last.status in (tasks_pb2.TASK_STATUS_QUEUED, tasks_pb2.TASK_STATUS_RUNNING)
    assert steps([when(t.scheduled_at) for t in tasks]) == [SECOND] * (len(tasks) - 1)
    await admin.cancel(last.id)
    await schedules.delete(schedule.id)


async def _finished(client: Client, schedule: schedules_pb2.Schedule, count: int) -> bool:
    tasks = await fired_tasks(client, schedule)
    done = [t for t in tasks if t.status == tasks_pb2.TASK_STATUS_SUCCEEDED]
    return len(done) >= count


async def _end(client: Client, task: tasks_pb2.Task) -> datetime:
    """When the task finished, once it has."""
    found = await wait_until(lambda: _terminal(client, task.id), timeout=30)
    return when(found.finished_at)


async def _terminal(client: Client, task_id: str) -> tasks_pb2.Task | None:
    task = await client.get(task_id)
    return task if task.HasField("finished_at") else None


async def test_a_workflow_schedule_starts_runs_and_pauses_when_its_workflow_goes(
    admin: Client, schedules: Schedules, demo_worker: Any
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique_name("wf"), [node("a", "echo", expression="input")])
    schedule = await schedules.create(
        interval_seconds=1,
        workflow_id=workflow.id,
        input=to_struct({"k": "v"}),
    )
    assert schedule.workflow_id == workflow.id and not schedule.HasField("task")

    async def runs() -> list[workflows_pb2.WorkflowRun]:
        reply = await flows.stub.ListWorkflowRuns(
            workflows_pb2.ListWorkflowRunsRequest(workflow_id=workflow.id, page_size=500),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
        return list(reply.runs)

    await wait_until(lambda: _count(runs, 2), timeout=20)
    for run in await runs():
        assert run.schedule_id == schedule.id and run.HasField("scheduled_at")
        assert run.input == schedule.input
    shown = await schedules.get(schedule.id)
    assert shown.last_run_id and not shown.last_task_id

    # The workflow goes (once no run of it is going): the schedule pauses
    # itself, saying why, instead of failing every second.
    async def deleted() -> bool:
        try:
            await flows.delete(workflow.id)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            return False
        return True

    await wait_until(deleted, timeout=20)
    paused = await wait_until(lambda: _paused(schedules, schedule.id), timeout=10)
    assert workflow.id in paused.note and "deleted" in paused.note
    assert not paused.next_fire_times
    trigger = await refused(schedules.trigger(schedule.id))
    assert trigger.code() == grpc.StatusCode.FAILED_PRECONDITION
    await schedules.delete(schedule.id)


async def _count(read: Any, count: int) -> bool:
    return len(await read()) >= count


async def _paused(schedules: Schedules, schedule_id: str) -> schedules_pb2.Schedule | None:
    schedule = await schedules.get(schedule_id)
    return schedule if schedule.paused else None
