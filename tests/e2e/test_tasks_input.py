"""TaskService's input rules and per-call behaviour that needs no worker
(DESIGN §4-§5): field violations in the rich status, idempotent creation,
bad page tokens, updates of a pending task, ownership.

One server serves the whole module: each test looks only at what it made."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import grpc
import pytest

from orchestrator.proto import auth_pb2, tasks_pb2
from tests.e2e.conftest import Client, connect, fields_of, refused, to_dict, to_struct, update
from tests.support.server import ServerProcess

MAX_PAYLOAD_BYTES = 4096
PENDING = tasks_pb2.TASK_STATUS_PENDING

pytestmark = pytest.mark.server_env(ORCHESTRATOR_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD_BYTES))


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


def nested(levels: int) -> dict[str, Any]:
    """A JSON object `levels` deep: {} is one level, {"a": {}} two."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


BAD_CREATES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "empty type": ({"type": ""}, ["type"]),
    "malformed type": ({"type": "9bad type!"}, ["type"]),
    "title over 200 characters": ({"type": "echo", "title": "t" * 201}, ["title"]),
    "input nested 33 levels": ({"type": "echo", "input": nested(33)}, ["input"]),
    "input over the payload limit": (
        {"type": "echo", "input": {"blob": "x" * MAX_PAYLOAD_BYTES}},
        ["input"],
    ),
    "several problems at once": (
        {"type": "", "title": "t" * 201, "max_attempts": 1000},
        ["max_attempts", "title", "type"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CREATES))
async def test_create_refuses_bad_input(admin: Client, case: str) -> None:
    fields, expected = BAD_CREATES[case]
    request = tasks_pb2.CreateTaskRequest(
        **{k: to_struct(v) if k == "input" else v for k, v in fields.items()}, start=True
    )
    before = await admin.list_ids()

    error = await refused(admin.tasks.CreateTask(request, metadata=admin.metadata, timeout=30))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert sorted(fields_of(error)) == expected
    for field in expected:
        assert field in (error.details() or "")
    assert await admin.list_ids() == before


async def test_create_accepts_input_at_the_limits(admin: Client) -> None:
    title = "t" * 200
    deep = nested(32)
    # {"blob":"xx..."} is 11 bytes of JSON around the string.
    big = {"blob": "x" * (MAX_PAYLOAD_BYTES - 11)}

    created = [
        await admin.create("a.b-c_d:e/f9", {}, title=title),
        await admin.create("echo", deep),
        await admin.create("echo", big),
    ]

    assert created[0].title == title
    assert to_dict(created[1].input) == deep
    assert to_dict(created[2].input) == big
    assert {t.id for t in created} <= set(await admin.list_ids())


async def test_same_idempotency_key_gives_the_same_task(admin: Client) -> None:
    kind = f"idem.{uuid.uuid4().hex}"  # this test's tasks alone
    first = await admin.create(kind, {"n": 1}, idempotency_key="order-42")
    second = await admin.create(kind, {"n": 2}, idempotency_key="order-42")

    assert second.id == first.id
    assert to_dict(second.input) == {"n": 1}
    assert await admin.list_ids(type=kind) == [first.id]

    # Concurrent creations with one key race in the database: still one task.
    racing = await asyncio.gather(
        *(admin.create(kind, {"n": n}, idempotency_key="order-43") for n in range(10))
    )
    assert len({t.id for t in racing}) == 1
    other = racing[0]
    assert other.id != first.id
    assert sorted(await admin.list_ids(type=kind)) == sorted([first.id, other.id])


async def test_list_refuses_bad_arguments(admin: Client) -> None:
    for token in ("garbage!", "bm90IGEgdG9rZW4", str(uuid.uuid4())):
        error = await refused(admin.list(page_token=token))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, token
        assert fields_of(error) == ["page_token"], token
    error = await refused(admin.list(label="no-equals-sign"))
    assert (error.code(), fields_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, ["label"])
    error = await refused(admin.list(page_size=-1))
    assert (error.code(), fields_of(error)) == (grpc.StatusCode.INVALID_ARGUMENT, ["page_size"])


async def test_update_title_appends_an_updated_event(admin: Client) -> None:
    task = await admin.create("echo", {"n": 1}, title="before")

    updated = await update(admin, tasks_pb2.Task(id=task.id, title="after ✓"), "title")

    assert (updated.title, updated.status) == ("after ✓", PENDING)
    assert to_dict(updated.input) == {"n": 1}
    assert (await admin.get(task.id)).title == "after ✓"
    # A pending task's feed does not end: read its one event, then hang up.
    watch = admin.watch_call(task.id)
    event = await asyncio.wait_for(watch.read(), 30)
    watch.cancel()
    assert (event.sequence, event.type, event.status, event.message) == (
        1,
        tasks_pb2.TASK_EVENT_TYPE_UPDATED,
        PENDING,
        "title",
    )
    assert (await admin.get(task.id)).last_sequence == 1

    error = await refused(update(admin, tasks_pb2.Task(id=task.id, title="x"), "bogus"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == ["update_mask.bogus"]
    error = await refused(update(admin, tasks_pb2.Task(id=task.id, title="t" * 201), "title"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == ["task.title"]
    unchanged = await admin.get(task.id)
    assert (unchanged.title, unchanged.last_sequence) == ("after ✓", 1)


async def test_member_cannot_see_the_admins_task(
    orchestrator: ServerProcess, admin: Client
) -> None:
    task = await admin.create("echo", {"secret": "admin only"}, title="the admin's")
    await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username="mallory", password="member-password-1", role="member"),
        metadata=admin.metadata,
        timeout=30,
    )

    async with connect(orchestrator, "mallory", "member-password-1") as member:
        calls: dict[str, Awaitable[Any]] = {
            "GetTask": member.get(task.id),
            "CancelTask": member.cancel(task.id),
            "WatchTask": member.watch(task.id),
            "ExecuteTask": member.execute(task.id),
            "UpdateTask": update(member, tasks_pb2.Task(id=task.id, title="mine"), "title"),
            "DeleteTask": member.tasks.DeleteTask(
                tasks_pb2.DeleteTaskRequest(id=task.id), metadata=member.metadata, timeout=30
            ),
        }
        for name, call in calls.items():
            error = await refused(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND, name
        # The same answer as for a task that does not exist at all.
        missing = str(uuid.uuid4())
        error = await refused(member.get(missing))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert await member.list_ids() == []
        own = await member.create("echo", {"mine": True})
        assert await member.list_ids() == [own.id]

    unchanged = await admin.get(task.id)
    assert (unchanged.status, unchanged.title, unchanged.last_sequence) == (
        PENDING,
        "the admin's",
        0,
    )
    assert {task.id, own.id} <= set(await admin.list_ids())
