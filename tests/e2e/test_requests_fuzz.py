"""Every unary method, fed requests generated from its message descriptor
(and some of them with bytes overwritten), answers only the codes DESIGN §5
documents: never INTERNAL or UNKNOWN. The server stays healthy and logs no
traceback.

Methods are found in the generated modules' service descriptors, so a
method added later is fuzzed too. Callers are an admin and a member with
API tokens (which no fuzzed Logout can end) and an admin session, logged
in again whenever a fuzzed call ended it. The ids the generated requests
may name are real (a user, tasks, a workflow and its run, an API token, and
for ScheduleService's methods schedules of a task and of that workflow), but
never the callers' own, so no call can lock the fuzz out.

Derandomized, a fixed number of examples per method: the same requests on
every run, well under two minutes in all. Schedules also get valid specs at
the ends of what a Timestamp and an int32 can say, which random requests
seldom reach: every method on them answers cleanly too."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    health_pb2,
    health_pb2_grpc,
    schedules_pb2,
    schedules_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)
from tests.support.messages import messages, service_methods
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

Metadata = tuple[tuple[str, str], ...]

EXAMPLES_PER_METHOD = 40
CALL_TIMEOUT = 15.0
# DESIGN §5's codes, ABORTED for conflicts, UNIMPLEMENTED for a method not built yet.
DOCUMENTED = frozenset(
    {
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "FAILED_PRECONDITION",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "UNAVAILABLE",
        "ABORTED",
        "UNIMPLEMENTED",
    }
)
LEAKS = ("Traceback", "<class", "Unexpected", "Error parsing")
# Text worth sending besides random text: names and values the server knows.
WORDS = (
    *("echo", "fuzzed", "victim", "admin", "member", "worker", "api", "a", "b", "x=y"),
    *("a-long-password-1", "true", "input.n > 0.0", "{'n': 1.0}"),
    *("*/5 * * * *", "@hourly", "0 9 * * MON-FRI", "Europe/Paris"),
)
MEMBER_PASSWORD = "member-password-1"
VICTIM_PASSWORD = "victim-password-1"

# Wrong passwords are part of the fuzz: the throttle must not lock out the
# session caller's own logins in between.
# Retention off: backfills reach back to the year 1 (with an age set, a start
# older than it is refused before the calendar is searched).
pytestmark = pytest.mark.server_env(
    ORCHESTRATOR_LOGIN_MAX_FAILURES="10000", ORCHESTRATOR_RETENTION_DAYS="0"
)

UNARY = [m for m in service_methods() if not (m.client_streaming or m.server_streaming)]


@dataclass
class Fuzz:
    server: ServerProcess
    channel: grpc.Channel
    callers: dict[str, Metadata]
    ids: tuple[str, ...]
    workflow_id: str
    words: tuple[str, ...]

    def ids_for(self, method: MethodDescriptor) -> tuple[str, ...]:
        """The real ids; for a schedule's method, two schedules of its own too:
        a DeleteSchedule fuzzed earlier leaves none for the methods after it."""
        if method.containing_service.name != "ScheduleService":
            return self.ids
        admin = self.callers["admin"]
        return (*self.ids, *new_schedules(self.channel, admin, self.workflow_id, method.name))

    def call(self, method: MethodDescriptor, raw: bytes, caller: str) -> tuple[str, str]:
        """The code's name and the details a call with `raw` answers."""
        invoke = self.channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}")
        try:
            invoke(raw, metadata=self.callers[caller], timeout=CALL_TIMEOUT)
        except grpc.RpcError as error:
            return error.code().name, error.details() or ""
        return "OK", ""

    def keep_session(self) -> None:
        """Logs the session caller in again if a fuzzed call logged it out."""
        auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        try:
            auth.WhoAmI(
                auth_pb2.WhoAmIRequest(), metadata=self.callers["session"], timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error
            self.callers["session"] = login(self.channel, ADMIN_USERNAME, ADMIN_PASSWORD)[0]


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


def login(channel: grpc.Channel, username: str, password: str) -> tuple[Metadata, str]:
    reply = auth_pb2_grpc.AuthServiceStub(channel).Login(
        auth_pb2.LoginRequest(username=username, password=password), timeout=CALL_TIMEOUT
    )
    return (("authorization", f"Bearer {reply.access_token}"),), reply.refresh_token


def api_token(channel: grpc.Channel, metadata: Metadata, name: str) -> Metadata:
    reply = auth_pb2_grpc.AuthServiceStub(channel).CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name=name, scope="api"),
        metadata=metadata,
        timeout=CALL_TIMEOUT,
    )
    return (("authorization", f"Bearer {reply.token}"),)


@pytest.fixture(scope="module")
def fuzz(orchestrator: ServerProcess) -> Iterator[Fuzz]:
    assert orchestrator.address
    with grpc.insecure_channel(orchestrator.address) as channel:
        yield Fuzz(orchestrator, channel, *_callers_and_ids(channel), WORDS)


def _callers_and_ids(
    channel: grpc.Channel,
) -> tuple[dict[str, Metadata], tuple[str, ...], str]:
    """The callers, the real ids (and a refresh token) fuzzed requests may
    name, and the id of the workflow among them."""
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)
    flows = workflows_pb2_grpc.WorkflowServiceStub(channel)
    session, _ = login(channel, ADMIN_USERNAME, ADMIN_PASSWORD)
    for username, password in (("member", MEMBER_PASSWORD), ("victim", VICTIM_PASSWORD)):
        auth.CreateUser(
            auth_pb2.CreateUserRequest(username=username, password=password, role="member"),
            metadata=session,
            timeout=CALL_TIMEOUT,
        )
    member, _ = login(channel, "member", MEMBER_PASSWORD)
    victim, victim_refresh = login(channel, "victim", VICTIM_PASSWORD)
    callers = {
        "admin": api_token(channel, session, "fuzz-admin"),
        "member": api_token(channel, member, "fuzz-member"),
        "session": session,
    }
    victim_id = auth.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=victim, timeout=CALL_TIMEOUT)
    victim_token = auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="victim", scope="worker"),
        metadata=victim,
        timeout=CALL_TIMEOUT,
    )
    ids = [victim_id.user.id, victim_token.api_token.id, victim_refresh]
    for metadata, start in ((session, False), (session, True), (member, True)):
        task = tasks.CreateTask(
            tasks_pb2.CreateTaskRequest(type="echo", start=start),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        ids.append(task.id)
    definition = workflows_pb2.WorkflowDefinition(
        nodes=[
            workflows_pb2.Node(id="a", type="echo"),
            workflows_pb2.Node(id="b", type="echo", input_expression="{'n': 1.0}"),
        ],
        edges=[workflows_pb2.Edge(source="a", target="b", condition="true")],
    )
    workflow = flows.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(name="fuzzed", definition=definition),
        metadata=session,
        timeout=CALL_TIMEOUT,
    )
    run = flows.ExecuteWorkflow(
        workflows_pb2.ExecuteWorkflowRequest(workflow_id=workflow.id),
        metadata=session,
        timeout=CALL_TIMEOUT,
    )
    run_id = next(iter(run)).run_id
    run.cancel()  # the stream is a view: the run goes on
    ids += [workflow.id, run_id]
    return callers, tuple(ids), workflow.id


def new_schedules(
    channel: grpc.Channel, metadata: Metadata, workflow_id: str, label: str
) -> list[str]:
    """A task's schedule and a workflow's (with a past to backfill), neither
    firing on its own within the module unless a fuzzed call changes it."""
    stub = schedules_pb2_grpc.ScheduleServiceStub(channel)
    requests = (
        schedules_pb2.CreateScheduleRequest(
            name=f"fuzzed-task-{label}",
            interval_seconds=3600,
            task=tasks_pb2.CreateTaskRequest(type="echo"),
        ),
        schedules_pb2.CreateScheduleRequest(
            name=f"fuzzed-workflow-{label}", cron="@hourly", workflow_id=workflow_id, paused=True
        ),
    )
    return [
        stub.CreateSchedule(request, metadata=metadata, timeout=CALL_TIMEOUT).id
        for request in requests
    ]


@pytest.mark.parametrize("method", UNARY, ids=[m.full_name for m in UNARY])
def test_every_unary_method_answers_only_documented_codes(
    fuzz: Fuzz, method: MethodDescriptor
) -> None:
    answers: Counter[str] = Counter()
    log_before = len(fuzz.server.lines)
    undocumented: list[tuple[str, str, bytes]] = []
    ids = fuzz.ids_for(method)

    @settings(
        max_examples=EXAMPLES_PER_METHOD,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def one_request(data: st.DataObject) -> None:
        request = data.draw(messages(method.input_type, fuzz.words, ids), label="request")
        raw = request.SerializeToString()
        if raw and data.draw(st.integers(0, 4), label="corrupt?") == 0:
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            raw = (
                raw[:at]
                + data.draw(st.binary(min_size=1, max_size=4), label="bytes")
                + raw[at + 1 :]
            )
        caller = data.draw(st.sampled_from(["admin", "admin", "member", "session"]), label="caller")

        code, details = fuzz.call(method, raw, caller)

        answers[code] += 1
        if code not in DOCUMENTED or any(leak in details for leak in LEAKS):
            undocumented.append((code, details, raw))
        if caller == "session":
            fuzz.keep_session()

    one_request()

    print(method.full_name, dict(answers))
    assert not undocumented, f"{method.full_name} answered {undocumented[:3]}"
    # A fuzz that only ever met the gate would prove nothing about the handler.
    assert set(answers) - {"UNAUTHENTICATED", "PERMISSION_DENIED"}, answers
    assert_serving(fuzz)
    assert not [line for line in fuzz.server.lines[log_before:] if "Traceback" in line], (
        "the server logged a traceback"
    )


def assert_serving(fuzz: Fuzz) -> None:
    reply = health_pb2_grpc.HealthServiceStub(fuzz.channel).Check(
        health_pb2.CheckRequest(), timeout=CALL_TIMEOUT
    )
    assert reply.status == health_pb2.HEALTH_STATUS_SERVING


# -- schedules at the ends of time ------------------------------------------------------

FIRST = -62_135_596_800  # 0001-01-01T00:00:00Z, Timestamp's first second
LAST = 253_402_300_799  # 9999-12-31T23:59:59Z, its last
PAST = 1_700_000_000  # 2023-11-14: a range from here has a past and a future
DAY = 86_400
INT32_MAX = 2**31 - 1
EDGE_SCHEDULES: dict[str, dict[str, Any]] = {
    "every-second-from-year-1-to-9999": {"interval_seconds": 1, "start_at": FIRST, "end_at": LAST},
    "starts-in-the-last-second": {"interval_seconds": 366 * DAY, "start_at": LAST},
    "every-minute-of-the-last-day-at-utc+14": {
        "cron": "* * * * *",
        "time_zone": "Pacific/Kiritimati",
        "start_at": LAST - DAY + 1,
    },
    "new-years-eve-at-utc-12-until-9999": {
        "cron": "59 23 31 12 *",
        "time_zone": "Etc/GMT+12",
        "end_at": LAST,
    },
    "ended-in-year-2-at-utc-12": {
        "cron": "@yearly",
        "time_zone": "Etc/GMT+12",
        "start_at": FIRST,
        "end_at": FIRST + 400 * DAY,
    },
    "leap-days-with-the-widest-window": {
        "cron": "0 0 29 2 *",
        "time_zone": "America/New_York",
        "catchup_window_seconds": INT32_MAX,
    },
    "weekly-in-new-york": {"cron": "@weekly", "time_zone": "America/New_York"},
    "widest-jitter": {
        "interval_seconds": 3601,
        "jitter_seconds": 3600,
        "catchup_window_seconds": INT32_MAX,
    },
}
# Backfill ranges: all of time, the far past, the recent past and the future.
BACKFILLS = ((FIRST, LAST), (FIRST, PAST), (PAST, LAST))
# Those with more than 1,000 times since the year 1, which a backfill from
# then refuses (and fires none of).
LONG_PASTS = {"new-years-eve-at-utc-12-until-9999", "weekly-in-new-york"}
SCHEDULES = schedules_pb2.DESCRIPTOR.services_by_name["ScheduleService"]


def stamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


@pytest.mark.parametrize("label", list(EDGE_SCHEDULES))
def test_schedules_at_the_ends_of_time_answer_cleanly(fuzz: Fuzz, label: str) -> None:
    log_before = len(fuzz.server.lines)
    fields: dict[str, Any] = {
        key: stamp(value) if key.endswith("_at") else value
        for key, value in EDGE_SCHEDULES[label].items()
    }
    spec = schedules_pb2.CreateScheduleRequest(
        name=f"edge-{label}", task=tasks_pb2.CreateTaskRequest(type="edge-probe"), **fields
    )
    stub = schedules_pb2_grpc.ScheduleServiceStub(fuzz.channel)
    schedule = stub.CreateSchedule(spec, metadata=fuzz.callers["admin"], timeout=CALL_TIMEOUT)
    requests: list[tuple[str, Any]] = [
        ("GetSchedule", schedules_pb2.GetScheduleRequest(id=schedule.id)),
        ("ListSchedules", schedules_pb2.ListSchedulesRequest(page_size=1000)),
        ("TriggerSchedule", schedules_pb2.TriggerScheduleRequest(id=schedule.id)),
        *(
            (
                "BackfillSchedule",
                schedules_pb2.BackfillScheduleRequest(
                    id=schedule.id, start_at=stamp(start), end_at=stamp(end)
                ),
            )
            for start, end in BACKFILLS
        ),
        ("UpdateSchedule", schedules_pb2.UpdateScheduleRequest(id=schedule.id, schedule=spec)),
        ("PauseSchedule", schedules_pb2.PauseScheduleRequest(id=schedule.id)),
        ("ResumeSchedule", schedules_pb2.ResumeScheduleRequest(id=schedule.id)),
        ("GetSchedule", schedules_pb2.GetScheduleRequest(id=schedule.id)),
        ("DeleteSchedule", schedules_pb2.DeleteScheduleRequest(id=schedule.id)),
    ]

    answers = [
        (name, *fuzz.call(SCHEDULES.methods_by_name[name], request.SerializeToString(), "admin"))
        for name, request in requests
    ]

    print(label, answers)
    unclean = [
        answer
        for answer in answers
        if answer[1] not in {"OK", "INVALID_ARGUMENT"} or any(leak in answer[2] for leak in LEAKS)
    ]
    assert not unclean, unclean
    backfills = [(code, details) for name, code, details in answers if name == "BackfillSchedule"]
    too_long = ("INVALID_ARGUMENT", "end_at: the range holds more than 1000 times: backfill less")
    expected = [too_long, too_long, ("OK", "")] if label in LONG_PASTS else [("OK", "")] * 3
    assert backfills == expected
    assert {code for name, code, _ in answers if name != "BackfillSchedule"} == {"OK"}, answers
    assert_serving(fuzz)
    assert not [line for line in fuzz.server.lines[log_before:] if "Traceback" in line], (
        "the server logged a traceback"
    )
