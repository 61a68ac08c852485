"""Isolation between members (DESIGN §5 "Ownership"): a member sees and
changes only its own tasks, workflows, runs, schedules and tokens. Another member's id
answers exactly like an id that never existed, and has no side effect; lists
show only the caller's objects, an admin's show everyone's; admin-only
methods refuse members; workers only receive tasks they may run.

The id-taking methods are enumerated from the service descriptors, so a new
one fails `test_every_id_taking_method_is_classified` until it is added here.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc import aio

from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    schedules_pb2,
    schedules_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from tests.e2e.conftest import REPO, to_dict, to_struct
from tests.support.grpc import Metadata, channel, login, wait_until
from tests.support.server import ServerProcess

CALL_TIMEOUT = 30.0
STREAM_TIMEOUT = 60.0
CONNECTED = re.compile(r"connected to \S+ as worker (\S+)")
# A type no worker in this module serves: the matrix's objects never move.
IDLE_TYPE = "isolation-probe"
TERMINAL = frozenset(
    {tasks_pb2.TASK_STATUS_SUCCEEDED, tasks_pb2.TASK_STATUS_FAILED, tasks_pb2.TASK_STATUS_CANCELLED}
)
SERVICES = (
    (tasks_pb2, "TaskService"),
    (workflows_pb2, "WorkflowService"),
    (auth_pb2, "AuthService"),
    (schedules_pb2, "ScheduleService"),
)
ADMIN_ONLY = ("CreateUser", "GetUser", "ListUsers", "DisableUser", "EnableUser", "ResetPassword")


# -- people and their things -----------------------------------------------------------


@dataclass
class Person:
    """One account's stubs on one channel, with its token on every call."""

    channel: aio.Channel
    metadata: Metadata
    user: auth_pb2.User

    def __post_init__(self) -> None:
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.workflows = workflows_pb2_grpc.WorkflowServiceStub(self.channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(self.channel)
        self.schedules = schedules_pb2_grpc.ScheduleServiceStub(self.channel)

    async def task(self, task_type: str = IDLE_TYPE, start: bool = False) -> tasks_pb2.Task:
        return await self.tasks.CreateTask(
            tasks_pb2.CreateTaskRequest(
                title=f"{self.user.username}'s task",
                type=task_type,
                input=to_struct({"owner": self.user.username}),
                start=start,
            ),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def workflow(self) -> workflows_pb2.Workflow:
        return await self.workflows.CreateWorkflow(
            workflows_pb2.CreateWorkflowRequest(
                name=f"wf-{secrets.token_hex(4)}", definition=definition()
            ),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def run(self, workflow_id: str) -> workflows_pb2.WorkflowRun:
        """Starts a run and returns it once started; the run goes on without
        the stream (streams are views)."""
        call = self.workflows.ExecuteWorkflow(
            workflows_pb2.ExecuteWorkflowRequest(workflow_id=workflow_id, input=to_struct({})),
            metadata=self.metadata,
            timeout=STREAM_TIMEOUT,
        )
        try:
            async with asyncio.timeout(STREAM_TIMEOUT):
                while True:
                    event = await call.read()
                    assert event is not aio.EOF, "the run's stream ended at once"
                    if event.type == workflows_pb2.WORKFLOW_EVENT_TYPE_NODE_QUEUED:
                        break
        finally:
            call.cancel()
        return await self.workflows.GetWorkflowRun(
            workflows_pb2.GetWorkflowRunRequest(id=event.run_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def schedule(self) -> schedules_pb2.Schedule:
        """An hourly schedule of an idle task that ended a minute ago: it
        never fires on its own, but has a past a backfill would fire."""
        return await self.schedules.CreateSchedule(
            schedules_pb2.CreateScheduleRequest(
                name=f"{self.user.username}'s schedule",
                cron="@hourly",
                task=tasks_pb2.CreateTaskRequest(type=IDLE_TYPE),
                end_at=stamp(datetime.now(UTC) - timedelta(minutes=1)),
            ),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def api_token(self, scope: str) -> auth_pb2.CreateApiTokenResponse:
        return await self.auth.CreateApiToken(
            auth_pb2.CreateApiTokenRequest(name=f"{scope}-token", scope=scope),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def get_task(self, task_id: str) -> tasks_pb2.Task:
        return await self.tasks.GetTask(
            tasks_pb2.GetTaskRequest(id=task_id), metadata=self.metadata, timeout=CALL_TIMEOUT
        )

    async def wait_task(self, task_id: str) -> tasks_pb2.Task:
        """Follows the task to its end, then reads it."""
        call = self.tasks.WatchTask(
            tasks_pb2.WatchTaskRequest(id=task_id), metadata=self.metadata, timeout=STREAM_TIMEOUT
        )
        async with asyncio.timeout(STREAM_TIMEOUT):
            async for event in call:
                if event.status in TERMINAL:
                    break
        call.cancel()
        return await self.get_task(task_id)


def definition() -> workflows_pb2.WorkflowDefinition:
    return workflows_pb2.WorkflowDefinition(
        nodes=[workflows_pb2.Node(id="only", type=IDLE_TYPE, input=to_struct({"n": 1}))]
    )


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


@pytest.fixture
async def ch(shared_server: ServerProcess) -> AsyncIterator[aio.Channel]:
    assert shared_server.address
    async with channel(shared_server.address) as opened:
        yield opened


@pytest.fixture
async def admin(ch: aio.Channel) -> Person:
    metadata = await login(ch)
    who = await auth_pb2_grpc.AuthServiceStub(ch).WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=CALL_TIMEOUT
    )
    return Person(ch, metadata, who.user)


async def new_member(ch: aio.Channel, admin: Person, label: str) -> Person:
    password = "pw-" + secrets.token_urlsafe(12)
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(
            username=f"{label}-{secrets.token_hex(4)}", password=password, role="member"
        ),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    return Person(ch, await login(ch, user.username, password), user)


@pytest.fixture
async def alice(ch: aio.Channel, admin: Person) -> Person:
    return await new_member(ch, admin, "alice")


@pytest.fixture
async def bob(ch: aio.Channel, admin: Person) -> Person:
    return await new_member(ch, admin, "bob")


@dataclass
class Belongings:
    """A's objects, by the kind of id that names them."""

    task: tasks_pb2.Task
    workflow: workflows_pb2.Workflow
    run: workflows_pb2.WorkflowRun
    schedule: schedules_pb2.Schedule
    token: auth_pb2.CreateApiTokenResponse
    user: auth_pb2.User

    def ids(self) -> dict[str, str]:
        return {
            "task": self.task.id,
            "workflow": self.workflow.id,
            "run": self.run.id,
            "schedule": self.schedule.id,
            "token": self.token.api_token.id,
            "user": self.user.id,
        }


@pytest.fixture
async def belongings(alice: Person) -> Belongings:
    workflow = await alice.workflow()
    return Belongings(
        task=await alice.task(),
        workflow=workflow,
        run=await alice.run(workflow.id),
        schedule=await alice.schedule(),
        token=await alice.api_token("api"),
        user=alice.user,
    )


# -- the id-taking methods ------------------------------------------------------------------


def _names_a_resource(message: Descriptor) -> bool:
    fields = message.fields_by_name
    if "id" in fields or "workflow_id" in fields:
        return True
    nested = fields.get("task")
    return (
        nested is not None
        and nested.message_type is not None
        and "id" in (nested.message_type.fields_by_name)
    )


def id_taking_methods() -> dict[str, MethodDescriptor]:
    return {
        f"{module.DESCRIPTOR.services_by_name[name].name}.{method.name}": method
        for module, name in SERVICES
        for method in module.DESCRIPTOR.services_by_name[name].methods
        if _names_a_resource(method.input_type)
    }


def _by_id(cls: Callable[..., Message], **extra: Any) -> Callable[[str], Message]:
    return lambda rid: cls(id=rid, **extra)


@dataclass(frozen=True)
class Probe:
    """How to ask for one resource by id, and what a stranger must get."""

    kind: str  # which of A's ids goes in
    request: Callable[[str], Message]
    expected: grpc.StatusCode = grpc.StatusCode.NOT_FOUND


def _backfill(rid: str) -> schedules_pb2.BackfillScheduleRequest:
    now = datetime.now(UTC)
    return schedules_pb2.BackfillScheduleRequest(
        id=rid, start_at=stamp(now - timedelta(days=1)), end_at=stamp(now)
    )


PROBES: dict[str, Probe] = {
    "TaskService.GetTask": Probe("task", _by_id(tasks_pb2.GetTaskRequest)),
    "TaskService.UpdateTask": Probe(
        "task",
        lambda rid: tasks_pb2.UpdateTaskRequest(
            task=tasks_pb2.Task(id=rid, title="taken over"),
            update_mask=field_mask_pb2.FieldMask(paths=["title"]),
        ),
    ),
    "TaskService.DeleteTask": Probe("task", _by_id(tasks_pb2.DeleteTaskRequest)),
    "TaskService.StartTask": Probe("task", _by_id(tasks_pb2.StartTaskRequest)),
    "TaskService.CancelTask": Probe("task", _by_id(tasks_pb2.CancelTaskRequest, reason="mine now")),
    "TaskService.ExecuteTask": Probe("task", _by_id(tasks_pb2.ExecuteTaskRequest)),
    "TaskService.WatchTask": Probe("task", _by_id(tasks_pb2.WatchTaskRequest)),
    "WorkflowService.GetWorkflow": Probe("workflow", _by_id(workflows_pb2.GetWorkflowRequest)),
    "WorkflowService.UpdateWorkflow": Probe(
        "workflow",
        lambda rid: workflows_pb2.UpdateWorkflowRequest(
            id=rid, definition=definition(), description="taken over"
        ),
    ),
    "WorkflowService.DeleteWorkflow": Probe(
        "workflow", _by_id(workflows_pb2.DeleteWorkflowRequest)
    ),
    "WorkflowService.ExecuteWorkflow": Probe(
        "workflow",
        lambda rid: workflows_pb2.ExecuteWorkflowRequest(workflow_id=rid, input=to_struct({})),
    ),
    # A filter, not a lookup: an empty page, as for an id that never existed.
    "WorkflowService.ListWorkflowRuns": Probe(
        "workflow",
        lambda rid: workflows_pb2.ListWorkflowRunsRequest(workflow_id=rid),
        grpc.StatusCode.OK,
    ),
    "WorkflowService.GetWorkflowRun": Probe("run", _by_id(workflows_pb2.GetWorkflowRunRequest)),
    "WorkflowService.WatchWorkflowRun": Probe("run", _by_id(workflows_pb2.WatchWorkflowRunRequest)),
    "WorkflowService.CancelWorkflowRun": Probe(
        "run", _by_id(workflows_pb2.CancelWorkflowRunRequest, reason="mine now")
    ),
    "AuthService.RevokeApiToken": Probe("token", _by_id(auth_pb2.RevokeApiTokenRequest)),
    # Admin-only: refused before any lookup, whoever the id names.
    "AuthService.GetUser": Probe(
        "user", _by_id(auth_pb2.GetUserRequest), grpc.StatusCode.PERMISSION_DENIED
    ),
    "AuthService.DisableUser": Probe(
        "user", _by_id(auth_pb2.DisableUserRequest), grpc.StatusCode.PERMISSION_DENIED
    ),
    "AuthService.EnableUser": Probe(
        "user", _by_id(auth_pb2.EnableUserRequest), grpc.StatusCode.PERMISSION_DENIED
    ),
    "AuthService.ResetPassword": Probe(
        "user",
        _by_id(auth_pb2.ResetPasswordRequest, new_password="taken-over-password"),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
    # Another's workflow is no workflow of the schedule's owner, as a missing one.
    "ScheduleService.CreateSchedule": Probe(
        "workflow",
        lambda rid: schedules_pb2.CreateScheduleRequest(
            name="on someone else's workflow", interval_seconds=60, workflow_id=rid
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    "ScheduleService.GetSchedule": Probe("schedule", _by_id(schedules_pb2.GetScheduleRequest)),
    "ScheduleService.UpdateSchedule": Probe(
        "schedule",
        lambda rid: schedules_pb2.UpdateScheduleRequest(
            id=rid,
            schedule=schedules_pb2.CreateScheduleRequest(
                name="taken over",
                interval_seconds=1,
                task=tasks_pb2.CreateTaskRequest(type=IDLE_TYPE),
            ),
        ),
    ),
    "ScheduleService.DeleteSchedule": Probe(
        "schedule", _by_id(schedules_pb2.DeleteScheduleRequest)
    ),
    "ScheduleService.PauseSchedule": Probe(
        "schedule", _by_id(schedules_pb2.PauseScheduleRequest, note="mine now")
    ),
    "ScheduleService.ResumeSchedule": Probe(
        "schedule", _by_id(schedules_pb2.ResumeScheduleRequest, note="mine now")
    ),
    "ScheduleService.TriggerSchedule": Probe(
        "schedule", _by_id(schedules_pb2.TriggerScheduleRequest)
    ),
    "ScheduleService.BackfillSchedule": Probe("schedule", _backfill),
}
ID_TAKING = id_taking_methods()


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    details: str
    messages: tuple[Any, ...]

    def shape(self, resource_id: str) -> tuple[grpc.StatusCode, str, tuple[Any, ...]]:
        """What a caller can compare: the answer with the id blanked out."""
        return (self.code, self.details.replace(resource_id, "<id>"), self.messages)


async def ask(ch: aio.Channel, method: MethodDescriptor, request: Message, md: Metadata) -> Answer:
    """Calls `method`; for a stream, only its first read counts."""
    response_class: Any = message_factory.GetMessageClass(method.output_type)
    factory = ch.unary_stream if method.server_streaming else ch.unary_unary
    call = factory(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_class.FromString,
    )(request, metadata=md, timeout=CALL_TIMEOUT)
    try:
        if method.server_streaming:
            first = await call.read()
            call.cancel()
            got = () if first is aio.EOF else (first,)
            return Answer(grpc.StatusCode.OK, "", tuple(m.SerializeToString() for m in got))
        reply = await call
    except aio.AioRpcError as error:
        return Answer(error.code(), error.details() or "", ())
    return Answer(grpc.StatusCode.OK, "", (reply.SerializeToString(),))


def test_every_id_taking_method_is_classified() -> None:
    assert set(ID_TAKING) == set(PROBES), "classify the new id-taking method in PROBES"
    # The enumeration finds what it must, streams and the nested task.id included.
    assert {
        "TaskService.UpdateTask",
        "TaskService.WatchTask",
        "WorkflowService.ExecuteWorkflow",
    } <= (set(ID_TAKING))


# -- the matrix ------------------------------------------------------------------------------


async def snapshot(alice: Person, things: Belongings) -> dict[str, Any]:
    """Everything A can read about its objects, to compare before and after."""
    workflow = await alice.workflows.GetWorkflow(
        workflows_pb2.GetWorkflowRequest(id=things.workflow.id),
        metadata=alice.metadata,
        timeout=CALL_TIMEOUT,
    )
    versions = await alice.workflows.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
    )
    run = await alice.workflows.GetWorkflowRun(
        workflows_pb2.GetWorkflowRunRequest(id=things.run.id),
        metadata=alice.metadata,
        timeout=CALL_TIMEOUT,
    )
    runs = await alice.workflows.ListWorkflowRuns(
        workflows_pb2.ListWorkflowRunsRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
    )
    tokens = await alice.auth.ListApiTokens(
        auth_pb2.ListApiTokensRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
    )
    tasks = await alice.tasks.ListTasks(
        tasks_pb2.ListTasksRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
    )
    schedule = await alice.schedules.GetSchedule(
        schedules_pb2.GetScheduleRequest(id=things.schedule.id),
        metadata=alice.metadata,
        timeout=CALL_TIMEOUT,
    )
    schedules = await alice.schedules.ListSchedules(
        schedules_pb2.ListSchedulesRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
    )
    return {
        "task": await alice.get_task(things.task.id),
        "tasks": tasks,
        "workflow": workflow,
        "workflows": versions,
        "run": run,
        "runs": runs,
        "schedule": schedule,
        "schedules": schedules,
        "tokens": tokens,
    }


async def test_a_strangers_id_answers_like_a_missing_one_and_changes_nothing(
    ch: aio.Channel, alice: Person, bob: Person, admin: Person, belongings: Belongings
) -> None:
    before = await snapshot(alice, belongings)
    assert before["task"].status == tasks_pb2.TASK_STATUS_PENDING
    assert before["run"].status == workflows_pb2.WORKFLOW_RUN_STATUS_RUNNING
    assert not before["schedule"].paused and not before["schedule"].HasField("last_fired_at")
    ids = belongings.ids()
    # The run's own node task is A's too.
    node_task_id = before["run"].nodes[0].task_id
    assert node_task_id

    problems: list[str] = []
    for name, probe in PROBES.items():
        method = ID_TAKING[name]
        targets = [ids[probe.kind]] + ([node_task_id] if probe.kind == "task" else [])
        for target in targets:
            unknown = str(uuid.uuid4())
            theirs = await ask(ch, method, probe.request(target), bob.metadata)
            missing = await ask(ch, method, probe.request(unknown), bob.metadata)
            if theirs.code != probe.expected:
                problems.append(f"{name}: {theirs.code.name} {theirs.details!r}")
            if theirs.shape(target) != missing.shape(unknown):
                problems.append(f"{name}: {theirs.shape(target)} != {missing.shape(unknown)}")
            if probe.expected == grpc.StatusCode.OK and theirs.messages:
                page = workflows_pb2.ListWorkflowRunsResponse.FromString(theirs.messages[0])
                if page.runs:
                    problems.append(f"{name}: shows {[r.id for r in page.runs]}")
    assert not problems, "\n".join(problems)

    # No side effect: A reads exactly what it read before.
    after = await snapshot(alice, belongings)
    for key, value in before.items():
        assert after[key] == value, key
    # A's token and session still work, and the admin still sees everything.
    who = await alice.auth.WhoAmI(
        auth_pb2.WhoAmIRequest(), metadata=bearer(belongings.token.token), timeout=CALL_TIMEOUT
    )
    assert (who.user.id, who.user.disabled) == (alice.user.id, False)
    assert (await admin.get_task(belongings.task.id)) == before["task"]


async def test_the_admin_may_do_what_a_stranger_may_not(
    alice: Person, admin: Person, belongings: Belongings
) -> None:
    # The control of the matrix: the ids are valid, only the caller was wrong.
    workflow = await admin.workflows.GetWorkflow(
        workflows_pb2.GetWorkflowRequest(id=belongings.workflow.id),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert workflow.owner_id == alice.user.id
    run = await admin.workflows.CancelWorkflowRun(
        workflows_pb2.CancelWorkflowRunRequest(id=belongings.run.id, reason="admin"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert run.status == workflows_pb2.WORKFLOW_RUN_STATUS_CANCELLED
    revoked = await admin.auth.RevokeApiToken(
        auth_pb2.RevokeApiTokenRequest(id=belongings.token.api_token.id),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert revoked.HasField("revoked_at")
    cancelled = await admin.tasks.CancelTask(
        tasks_pb2.CancelTaskRequest(id=belongings.task.id, reason="admin"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert cancelled.status == tasks_pb2.TASK_STATUS_CANCELLED
    # The schedule's past is there to fire, as Alice's.
    end = belongings.schedule.end_at.ToDatetime(tzinfo=UTC)
    backfilled = await admin.schedules.BackfillSchedule(
        schedules_pb2.BackfillScheduleRequest(
            id=belongings.schedule.id, start_at=stamp(end - timedelta(hours=3)), end_at=stamp(end)
        ),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert len(backfilled.fires) == 3
    assert (await alice.get_task(backfilled.fires[0].task_id)).owner_id == alice.user.id
    paused = await admin.schedules.PauseSchedule(
        schedules_pb2.PauseScheduleRequest(id=belongings.schedule.id, note="admin"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    assert (paused.paused, paused.owner_id) == (True, alice.user.id)


async def test_admin_only_methods_refuse_members(
    ch: aio.Channel, alice: Person, bob: Person
) -> None:
    service = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
    credentials = {
        "session": alice.metadata,
        "api token": bearer((await alice.api_token("api")).token),
    }
    fields: dict[str, dict[str, Any]] = {
        "CreateUser": {
            "username": f"x-{secrets.token_hex(4)}",
            "password": "p" * 12,
            "role": "admin",
        },
        "ResetPassword": {"id": bob.user.id, "new_password": "p" * 12},
        "ListUsers": {},
    }
    for credential, metadata in credentials.items():
        for name in ADMIN_ONLY:
            method = service.methods_by_name[name]
            request_class: Any = message_factory.GetMessageClass(method.input_type)
            request = request_class(**fields.get(name, {"id": bob.user.id}))
            answer = await ask(ch, method, request, metadata)
            assert answer.code == grpc.StatusCode.PERMISSION_DENIED, (credential, name, answer)
    # Bob is untouched: his session works and he is not disabled.
    who = await bob.auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=bob.metadata, timeout=10)
    assert not who.user.disabled


async def test_a_member_cannot_make_itself_admin_or_disable_itself(alice: Person) -> None:
    for call in (
        alice.auth.DisableUser(
            auth_pb2.DisableUserRequest(id=alice.user.id), metadata=alice.metadata, timeout=10
        ),
        alice.auth.CreateUser(
            auth_pb2.CreateUserRequest(username="alice-admin", password="p" * 12, role="admin"),
            metadata=alice.metadata,
            timeout=10,
        ),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_names_and_keys_are_per_owner_and_reveal_nothing(alice: Person, bob: Person) -> None:
    # The same idempotency key gives each member its own task, never the
    # other's; the same workflow name is free for each member.
    key = f"key-{secrets.token_hex(4)}"
    tasks = {}
    for person in (alice, bob):
        tasks[person.user.id] = await person.tasks.CreateTask(
            tasks_pb2.CreateTaskRequest(type=IDLE_TYPE, idempotency_key=key),
            metadata=person.metadata,
            timeout=CALL_TIMEOUT,
        )
    assert tasks[alice.user.id].id != tasks[bob.user.id].id
    assert [t.owner_id for t in tasks.values()] == [alice.user.id, bob.user.id]

    name = f"shared-name-{secrets.token_hex(4)}"
    made = [
        await person.workflows.CreateWorkflow(
            workflows_pb2.CreateWorkflowRequest(name=name, definition=definition()),
            metadata=person.metadata,
            timeout=CALL_TIMEOUT,
        )
        for person in (alice, bob)
    ]
    assert [w.owner_id for w in made] == [alice.user.id, bob.user.id]
    assert made[0].id != made[1].id


# -- lists -------------------------------------------------------------------------------


async def everything_listed(person: Person) -> dict[str, set[str]]:
    async def pages(fetch: Callable[[str], Any], items: str) -> set[str]:
        seen: set[str] = set()
        token = ""
        for _ in range(100):
            page = await fetch(token)
            seen |= {item.id for item in getattr(page, items)}
            token = page.next_page_token
            if not token:
                return seen
        raise AssertionError("the pages never ended")

    md = person.metadata
    return {
        "tasks": await pages(
            lambda t: person.tasks.ListTasks(
                tasks_pb2.ListTasksRequest(page_size=200, page_token=t), metadata=md, timeout=10
            ),
            "tasks",
        ),
        "workflows": await pages(
            lambda t: person.workflows.ListWorkflows(
                workflows_pb2.ListWorkflowsRequest(page_size=200, page_token=t),
                metadata=md,
                timeout=10,
            ),
            "workflows",
        ),
        "runs": await pages(
            lambda t: person.workflows.ListWorkflowRuns(
                workflows_pb2.ListWorkflowRunsRequest(page_size=200, page_token=t),
                metadata=md,
                timeout=10,
            ),
            "runs",
        ),
        "tokens": await pages(
            lambda t: person.auth.ListApiTokens(
                auth_pb2.ListApiTokensRequest(page_size=200, page_token=t),
                metadata=md,
                timeout=10,
            ),
            "api_tokens",
        ),
        "schedules": await pages(
            lambda t: person.schedules.ListSchedules(
                schedules_pb2.ListSchedulesRequest(page_size=200, page_token=t),
                metadata=md,
                timeout=10,
            ),
            "schedules",
        ),
    }


async def own_things(person: Person) -> dict[str, set[str]]:
    workflow = await person.workflow()
    run = await person.run(workflow.id)
    return {
        "tasks": {(await person.task()).id, run.nodes[0].task_id},
        "workflows": {workflow.id},
        "runs": {run.id},
        "tokens": {(await person.api_token("api")).api_token.id},
        "schedules": {(await person.schedule()).id},
    }


async def test_lists_show_only_the_callers_objects_and_everything_to_admins(
    alice: Person, bob: Person, admin: Person
) -> None:
    alices = await own_things(alice)
    bobs = await own_things(bob)

    seen_by_alice = await everything_listed(alice)
    seen_by_bob = await everything_listed(bob)
    seen_by_admin = await everything_listed(admin)
    for kind in alices:
        assert seen_by_alice[kind] == alices[kind], kind
        assert seen_by_bob[kind] == bobs[kind], kind
        assert alices[kind] | bobs[kind] <= seen_by_admin[kind], kind


# -- workers -------------------------------------------------------------------------------


@contextlib.contextmanager
def worker_processes(server: ServerProcess) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop(15)
            print(f"--- worker log (pid {process.pid}):", process.log, sep="\n")


async def start_demo_worker(server: ServerProcess, started: list[ServerProcess], token: str) -> str:
    """`orchestrator worker --demo` with `token`; its worker id once connected."""
    assert server.address
    process = ServerProcess(
        server.env["DATABASE_URL"],
        env={"ORCHESTRATOR_URL": server.address, "ORCHESTRATOR_TOKEN": token},
        args=("worker", "--demo", "--slots", "4"),
        cwd=REPO,
    )
    started.append(process)
    process.launch()
    match = await asyncio.to_thread(process.wait_for_log, CONNECTED, 30)
    return match.group(1)


async def test_workers_receive_only_tasks_they_may_run(
    shared_server: ServerProcess, alice: Person, bob: Person, admin: Person
) -> None:
    # A's task waits in the queue before anyone connects: first in line for
    # any worker that could take it.
    alices = await alice.task("echo", start=True)
    assert alices.status == tasks_pb2.TASK_STATUS_QUEUED

    with worker_processes(shared_server) as started:
        bobs_token = (await bob.api_token("worker")).token
        bobs_worker = await start_demo_worker(shared_server, started, bobs_token)
        bobs = await bob.task("echo", start=True)
        done = await bob.wait_task(bobs.id)
        assert (done.status, done.worker_id) == (tasks_pb2.TASK_STATUS_SUCCEEDED, bobs_worker)

        # B's worker took B's later task and left A's earlier one alone.
        waiting = await alice.get_task(alices.id)
        assert (waiting.status, waiting.worker_id) == (tasks_pb2.TASK_STATUS_QUEUED, "")
        # Nor does anyone see another member's workers.
        listed = await bob.workers.ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=bob.metadata, timeout=CALL_TIMEOUT
        )
        assert [w.id for w in listed.workers] == [bobs_worker]
        listed = await alice.workers.ListWorkers(
            workers_pb2.ListWorkersRequest(), metadata=alice.metadata, timeout=CALL_TIMEOUT
        )
        assert list(listed.workers) == []

        # An admin's worker runs anyone's.
        admins_worker = await start_demo_worker(
            shared_server, started, (await admin.api_token("worker")).token
        )
        finished = await alice.wait_task(alices.id)
        assert (finished.status, finished.worker_id) == (
            tasks_pb2.TASK_STATUS_SUCCEEDED,
            admins_worker,
        )
        assert to_dict(finished.output) == {"owner": alice.user.username}


class RawWorker:
    """A hand-driven WorkerService.Connect stream."""

    def __init__(self, person: Person, token: str) -> None:
        self.call: Any = person.workers.Connect(metadata=bearer(token), timeout=STREAM_TIMEOUT)

    async def hello(self, task_type: str) -> None:
        hello = workers_pb2.Hello(name="raw", task_types=[task_type], slots=1)
        await self.call.write(workers_pb2.WorkerMessage(hello=hello))
        assert (await self.receive()).WhichOneof("kind") == "welcome"

    async def receive(self) -> workers_pb2.ServerMessage:
        async with asyncio.timeout(STREAM_TIMEOUT):
            message = await self.call.read()
        assert message is not aio.EOF, "the server ended the worker stream"
        return message  # type: ignore[no-any-return]


async def test_a_worker_cannot_report_on_a_task_it_does_not_hold(
    alice: Person, bob: Person
) -> None:
    task_type = f"held-{secrets.token_hex(3)}"
    alices_worker = RawWorker(alice, (await alice.api_token("worker")).token)
    bobs_worker = RawWorker(bob, (await bob.api_token("worker")).token)
    await alices_worker.hello(task_type)
    await bobs_worker.hello(f"other-{secrets.token_hex(3)}")
    task = await alice.task(task_type, start=True)
    message = await alices_worker.receive()
    assert message.WhichOneof("kind") == "assignment", message
    assignment = message.assignment
    assert assignment.task_id == task.id

    # B's worker learns the id (ids are not secrets) and the fencing token
    # (a small counter), and claims the result.
    forged = workers_pb2.TaskComplete(
        task_id=task.id,
        fencing_token=assignment.fencing_token,
        output=to_struct({"forged by": bob.user.username}),
    )
    await bobs_worker.call.write(workers_pb2.WorkerMessage(complete=forged))
    # Whichever comes first: B's answer, or A's task moving.
    reply = asyncio.create_task(bobs_worker.receive())
    try:

        async def settled() -> bool:
            running = (await alice.get_task(task.id)).status == tasks_pb2.TASK_STATUS_RUNNING
            return reply.done() or not running

        await wait_until(settled, timeout=CALL_TIMEOUT)
        current = await alice.get_task(task.id)
        assert (current.status, to_dict(current.output)) == (tasks_pb2.TASK_STATUS_RUNNING, {})
        assert (await reply).WhichOneof("kind") == "rejection"
    finally:
        reply.cancel()
        alices_worker.call.cancel()
        bobs_worker.call.cancel()
