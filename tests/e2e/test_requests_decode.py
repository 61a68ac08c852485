"""Requests that do not decode, or decode to values no handler can use, are
refused with INVALID_ARGUMENT naming what was wrong, and nothing is written:
invalid UTF-8, Structs nested past protobuf's limit, garbage bytes, unknown
enum numbers, NaN and Infinity, Timestamps out of range; on unary calls, on
server streams and in the middle of a worker's stream.

The bytes are sent as they are, through calls with no serializer, since the
generated stubs cannot produce them. One server serves the whole module:
each test looks only at what it made."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from grpc import aio

from orchestrator.proto import auth_pb2, tasks_pb2, workers_pb2, workflows_pb2, workflows_pb2_grpc
from tests.e2e.conftest import CALL_TIMEOUT, Client, fields_of, refused, to_struct, update
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess

pytestmark = pytest.mark.any_database

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DECODE_PREFIX = "request could not be decoded: "
# What must never reach a client: grpc.aio's own answer to a deserializer
# that raises, or any Python class name.
LEAKS = ("Unexpected", "<class", "DecodeError", "google.protobuf", "upb_")


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


def raw_unary(client: Client, method: str) -> Callable[..., Any]:
    """`method` (`Service/Method`, package implied) taking request bytes as they are."""
    return client.channel.unary_unary(f"/orchestrator.{method}")


async def send_raw(client: Client, method: str, raw: bytes) -> aio.AioRpcError:
    return await refused(raw_unary(client, method)(raw, metadata=client.metadata, timeout=30))


def with_bad_utf8(message: Message, marker: bytes) -> bytes:
    """`message`'s bytes with the text `marker` (4 bytes) made invalid UTF-8."""
    raw = message.SerializeToString()
    assert raw.count(marker) == 1 and len(marker) == 4
    return raw.replace(marker, b"\xff\xfe\xfd\xfc")


def create_nested(levels: int) -> bytes:
    """A CreateTaskRequest whose input is {"a": {"a": ... {}}}, `levels`
    Structs deep. Put together as bytes: protobuf refuses to copy a Struct
    past its depth limit into a request."""
    outer = struct_pb2.Struct()
    inner = outer
    for _ in range(levels - 1):
        inner = inner.fields["a"].struct_value
    inner.SetInParent()
    nested = outer.SerializeToString()
    return tasks_pb2.CreateTaskRequest(type="echo").SerializeToString() + field(3, nested)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire: tag, length, payload."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


def assert_decode_refusal(error: aio.AioRpcError, reason: str) -> None:
    details = error.details() or ""
    assert error.code() == INVALID, error
    assert details.startswith(DECODE_PREFIX) and reason in details, details
    assert not any(leak in details for leak in LEAKS), details


def assert_clean(server: ServerProcess) -> None:
    assert "Traceback" not in server.log


# -- bytes that do not decode ------------------------------------------------------------


UTF8_CASES = {
    "string": tasks_pb2.CreateTaskRequest(type="echo", title="BAD!"),
    "struct-key": tasks_pb2.CreateTaskRequest(type="echo", input=to_struct({"BAD!": 1})),
}


@pytest.mark.parametrize("where", list(UTF8_CASES))
async def test_invalid_utf8_is_refused(
    admin: Client, orchestrator: ServerProcess, where: str
) -> None:
    before = await admin.list_ids()
    raw = with_bad_utf8(UTF8_CASES[where], b"BAD!")

    error = await send_raw(admin, "tasks.TaskService/CreateTask", raw)

    assert_decode_refusal(error, "not valid UTF-8")
    assert await admin.list_ids() == before
    assert_clean(orchestrator)


async def test_a_struct_nested_40_deep_is_served_or_refused_cleanly(
    admin: Client, orchestrator: ServerProcess
) -> None:
    call = raw_unary(admin, "tasks.TaskService/CreateTask")

    try:
        reply = await call(create_nested(40), metadata=admin.metadata, timeout=30)
    except aio.AioRpcError as error:
        # Past the engine's depth rule, or past protobuf's own limit.
        assert error.code() == INVALID, error
        assert not any(leak in (error.details() or "") for leak in LEAKS), error.details()
    else:
        assert tasks_pb2.Task.FromString(reply).id
    assert_clean(orchestrator)


async def test_a_struct_nested_1000_deep_is_refused(
    admin: Client, orchestrator: ServerProcess
) -> None:
    before = await admin.list_ids()
    error = await send_raw(admin, "tasks.TaskService/CreateTask", create_nested(1000))

    assert_decode_refusal(error, "nested too deeply")
    assert await admin.list_ids() == before
    assert_clean(orchestrator)


@pytest.mark.parametrize(
    "raw", [b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x08"], ids=["garbage", "truncated", "no-value"]
)
async def test_garbage_bytes_are_refused(
    admin: Client, orchestrator: ServerProcess, raw: bytes
) -> None:
    error = await send_raw(admin, "tasks.TaskService/GetTask", raw)

    assert_decode_refusal(error, "not a protobuf message")
    assert_clean(orchestrator)


async def test_undecodable_request_of_a_server_stream_is_refused(
    admin: Client, orchestrator: ServerProcess
) -> None:
    raw = with_bad_utf8(tasks_pb2.WatchTaskRequest(id="BAD!"), b"BAD!")
    call = admin.channel.unary_stream("/orchestrator.tasks.TaskService/WatchTask")(
        raw, metadata=admin.metadata, timeout=30
    )

    with pytest.raises(aio.AioRpcError) as caught:
        await call.read()

    assert_decode_refusal(caught.value, "not valid UTF-8")
    assert_clean(orchestrator)


async def test_an_open_method_refuses_undecodable_bytes_too(
    admin: Client, orchestrator: ServerProcess
) -> None:
    raw = with_bad_utf8(auth_pb2.LoginRequest(username="BAD!", password="p" * 12), b"BAD!")
    error = await refused(
        admin.channel.unary_unary("/orchestrator.auth.AuthService/Login")(raw, timeout=30)
    )

    assert_decode_refusal(error, "not valid UTF-8")
    assert_clean(orchestrator)


# -- values that decode but no handler can use -------------------------------------------


async def test_unknown_enum_numbers_in_filters_are_refused(
    admin: Client, orchestrator: ServerProcess
) -> None:
    runs = workflows_pb2_grpc.WorkflowServiceStub(admin.channel)

    tasks_error = await refused(admin.list(status=7))
    runs_error = await refused(
        runs.ListWorkflowRuns(
            workflows_pb2.ListWorkflowRunsRequest(status=5),  # type: ignore[arg-type]
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
    )

    for error in (tasks_error, runs_error):
        assert error.code() == INVALID, error
        assert fields_of(error) == ["status"]
    assert "7 is not a TaskStatus value" in (tasks_error.details() or "")
    assert_clean(orchestrator)


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
async def test_nan_and_infinity_in_a_task_input_are_refused(
    admin: Client, orchestrator: ServerProcess, number: float
) -> None:
    before = await admin.list_ids()
    request = tasks_pb2.CreateTaskRequest(
        type="echo", input=to_struct({"ok": 1, "deep": {"list": [1, number]}})
    )

    error = await refused(
        admin.tasks.CreateTask(request, metadata=admin.metadata, timeout=CALL_TIMEOUT)
    )

    assert error.code() == INVALID, error
    assert fields_of(error) == ["input.deep.list[1]"]
    assert "NaN and Infinity" in (error.details() or "")
    assert await admin.list_ids() == before
    assert_clean(orchestrator)


async def test_nan_in_an_update_is_refused_and_changes_nothing(
    admin: Client, orchestrator: ServerProcess
) -> None:
    task = await admin.create("echo", {"n": 1})
    task.input.CopyFrom(to_struct({"n": math.nan}))

    error = await refused(update(admin, task, "input"))

    assert error.code() == INVALID, error
    assert fields_of(error) == ["task.input.n"]
    assert dict((await admin.get(task.id)).input) == {"n": 1.0}
    assert_clean(orchestrator)


async def test_infinity_in_workflow_node_inputs_is_refused(
    admin: Client, orchestrator: ServerProcess
) -> None:
    stub = workflows_pb2_grpc.WorkflowServiceStub(admin.channel)
    definition = workflows_pb2.WorkflowDefinition(
        nodes=[
            workflows_pb2.Node(id="a", type="echo", input=to_struct({"n": 1})),
            workflows_pb2.Node(id="b", type="echo", input=to_struct({"n": math.inf})),
        ]
    )
    calls = {
        "validate": stub.ValidateWorkflow(
            workflows_pb2.ValidateWorkflowRequest(definition=definition),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        ),
        "create": stub.CreateWorkflow(
            workflows_pb2.CreateWorkflowRequest(name="infinite", definition=definition),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        ),
    }

    for name, call in calls.items():
        error = await refused(call)
        assert error.code() == INVALID, (name, error)
        assert fields_of(error) == ["definition.nodes[1].input.n"], name
    listed = await stub.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )
    assert "infinite" not in [w.name for w in listed.workflows]
    assert_clean(orchestrator)


async def test_out_of_range_timestamps_are_refused(
    admin: Client, orchestrator: ServerProcess
) -> None:
    task = await admin.create("echo", {})
    task.created_at.seconds = 10**15

    error = await refused(update(admin, task, "title"))

    assert error.code() == INVALID, error
    assert fields_of(error) == ["task.created_at"]
    assert_clean(orchestrator)


# -- in the middle of a worker's stream ----------------------------------------------------


def worker_message(**kind: Any) -> bytes:
    return workers_pb2.WorkerMessage(**kind).SerializeToString()


def undecodable_log(task_id: str, fencing_token: int) -> bytes:
    line = workers_pb2.TaskLog(task_id=task_id, fencing_token=fencing_token, line="BAD!")
    return with_bad_utf8(workers_pb2.WorkerMessage(log=line), b"BAD!")


def nan_completion(task_id: str, fencing_token: int) -> bytes:
    output = to_struct({"n": math.nan})
    complete = workers_pb2.TaskComplete(task_id=task_id, fencing_token=fencing_token, output=output)
    return worker_message(complete=complete)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(undecodable_log, DECODE_PREFIX), (nan_completion, "NaN and Infinity")],
    ids=["undecodable", "nan-output"],
)
async def test_a_bad_message_ends_the_worker_stream_with_invalid_argument(
    admin: Client,
    orchestrator: ServerProcess,
    bad: Callable[[str, int], bytes],
    reason: str,
) -> None:
    """The stream ends with the refusal and the worker's task goes back to
    the queue, as on any disconnect; nothing of the bad message is recorded."""
    token = await admin.worker_token("decode-worker")
    task_type = f"decode-{bad.__name__}"
    task = await admin.create(task_type, {}, start=True)
    call = admin.channel.stream_stream(
        "/orchestrator.workers.WorkerService/Connect",
        response_deserializer=workers_pb2.ServerMessage.FromString,
    )(metadata=(("authorization", f"Bearer {token}"),), timeout=60)
    hello = workers_pb2.Hello(name="decode-worker", task_types=[task_type], slots=1)
    await call.write(worker_message(hello=hello))
    assert (await call.read()).WhichOneof("kind") == "welcome"
    assignment = (await call.read()).assignment
    assert assignment.task_id == task.id
    await call.write(worker_message(heartbeat=workers_pb2.Heartbeat()))

    await call.write(bad(task.id, assignment.fencing_token))

    with pytest.raises(aio.AioRpcError) as caught:
        while True:
            await call.read()
    details = caught.value.details() or ""
    assert caught.value.code() == INVALID, caught.value
    assert reason in details and not any(leak in details for leak in LEAKS), details
    requeued = await wait_until(lambda: _queued(admin, task.id), timeout=CALL_TIMEOUT)
    assert not requeued.HasField("output")
    await admin.cancel(task.id)
    assert_clean(orchestrator)


async def _queued(client: Client, task_id: str) -> tasks_pb2.Task | None:
    task = await client.get(task_id)
    return task if task.status == tasks_pb2.TASK_STATUS_QUEUED else None
