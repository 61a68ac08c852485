"""Concurrency keys with the real server and real workers: never more than a
key's limit running (by the server's own start and end times), keys served
fairly, a lost worker's slot given back once, the two cancel strategies,
and keys that belong to their owner."""

from __future__ import annotations

import asyncio
import itertools
import secrets

import grpc
import pytest

from orchestrator.proto import auth_pb2, tasks_pb2
from orchestrator.status import violations
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    Client,
    ServerProcess,
    WorkerFactory,
    WorkerProcess,
    connect,
    read_until,
    refused,
)
from tests.e2e.limits_helpers import by_key, intervals, keyed, most_at_once
from tests.e2e.test_replicas import _worker_on, second_replica  # noqa: F401 (fixture)

SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED
CANCELLED = tasks_pb2.TASK_STATUS_CANCELLED
RUNNING = tasks_pb2.TASK_STATUS_RUNNING


async def running_status(client: Client, task_id: str) -> None:
    await read_until(client.watch_call(task_id), lambda e: e.status == RUNNING)


async def test_keys_never_exceed_their_limit_and_take_turns(
    admin: Client, start_worker: WorkerFactory
) -> None:
    # Each key's whole backlog is queued before the next key's, and before
    # any worker: a claim that read only the head of the queue would run
    # key a alone.
    tasks = [
        await keyed(admin, "sleep", {"seconds": 0.2}, key, 2)
        for key in ("a", "b", "c")
        for _ in range(20)
    ]
    await start_worker("--demo", "--slots", "10")
    spans = await intervals(admin, tasks)
    for task in tasks:
        assert (await admin.get(task.id)).status == SUCCEEDED
    assert most_at_once(spans) == {"a": 2, "b": 2, "c": 2}
    bounds = by_key(spans)
    for one, other in itertools.permutations(bounds, 2):
        # No key finished entirely before another started.
        assert bounds[other][0] < bounds[one][1], bounds


async def test_a_killed_workers_slot_is_given_back_once(
    admin: Client, start_worker: WorkerFactory
) -> None:
    tasks = [await keyed(admin, "sleep", {"seconds": 1.0}, "k", 2) for _ in range(6)]
    doomed = await start_worker("--demo", "--slots", "10")
    await asyncio.gather(*(running_status(admin, t.id) for t in tasks[:2]))
    doomed.kill()  # SIGKILL by pid: no goodbye, the stream just drops
    await start_worker("--demo", "--slots", "10")
    spans = await intervals(admin, tasks)
    for task in tasks:
        assert (await admin.get(task.id)).status == SUCCEEDED
    assert most_at_once(spans) == {"k": 2}
    # What the lost worker held ran again; nothing else did.
    assert len(tasks) < len(spans) <= len(tasks) + 2


async def test_unkeyed_tasks_behind_a_full_keys_backlog_start(
    admin: Client, start_worker: WorkerFactory
) -> None:
    backlog = [await keyed(admin, "sleep", {"seconds": 30}, "busy", 1) for _ in range(30)]
    plain = [await admin.create("echo", {"i": i}, start=True) for i in range(3)]
    await start_worker("--demo", "--slots", "5")
    for task in plain:
        await admin.watch(task.id)
        assert (await admin.get(task.id)).status == SUCCEEDED
    statuses = [(await admin.get(t.id)).status for t in backlog]
    assert statuses.count(RUNNING) == 1
    for task in backlog:
        await admin.cancel(task.id)


async def test_cancel_newest_cancels_a_task_that_finds_its_key_full(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    strategy = tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_NEWEST
    first = await keyed(admin, "sleep", {"seconds": 30}, "k", 1, concurrency_strategy=strategy)
    await running_status(admin, first.id)
    newest = await keyed(admin, "sleep", {"seconds": 30}, "k", 1, concurrency_strategy=strategy)
    await admin.watch(newest.id)
    cancelled = await admin.get(newest.id)
    assert cancelled.status == CANCELLED
    assert cancelled.error == "concurrency key k is at its limit 1"
    assert (await admin.get(first.id)).status == RUNNING
    await admin.cancel(first.id)


async def test_cancel_oldest_cancels_the_running_task_for_the_new_one(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    strategy = tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_OLDEST
    oldest = await keyed(admin, "sleep", {"seconds": 30}, "k", 1, concurrency_strategy=strategy)
    await running_status(admin, oldest.id)
    newer = await keyed(admin, "sleep", {"seconds": 0.2}, "k", 1, concurrency_strategy=strategy)
    await admin.watch(newer.id)
    assert (await admin.get(newer.id)).status == SUCCEEDED
    old = await admin.get(oldest.id)
    assert old.status == CANCELLED
    assert old.error.startswith("concurrency key k is at its limit 1")
    spans = await intervals(admin, [oldest, newer])
    assert most_at_once(spans) == {"k": 1}


async def test_the_same_key_of_two_owners_does_not_interfere(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    started: list[tasks_pb2.Task] = []
    for name in ("alice", "bob"):
        password = "pw-" + secrets.token_urlsafe(12)
        username = f"{name}-{secrets.token_hex(4)}"
        await admin.auth.CreateUser(
            auth_pb2.CreateUserRequest(username=username, password=password, role="member"),
            metadata=admin.metadata,
            timeout=CALL_TIMEOUT,
        )
        async with connect(orchestrator, username, password) as member:
            task = await keyed(member, "sleep", {"seconds": 30}, "shared", 1)
            await running_status(member, task.id)
            started.append(task)
    for task in started:
        assert (await admin.get(task.id)).status == RUNNING
        await admin.cancel(task.id)


@pytest.mark.postgres
async def test_a_keys_limit_holds_across_replicas(
    database_url: str,
    orchestrator: ServerProcess,
    second_replica: ServerProcess,  # noqa: F811 (the fixture)
    admin: Client,
    start_worker: WorkerFactory,
) -> None:
    tasks = [await keyed(admin, "sleep", {"seconds": 0.2}, "k", 2) for _ in range(24)]
    await start_worker("--demo", "--slots", "4")
    other: WorkerProcess = await _worker_on(second_replica, admin, database_url)
    try:
        spans = await intervals(admin, tasks)
    finally:
        await asyncio.to_thread(other.stop, 15)
    assert most_at_once(spans) == {"k": 2}
    assert {s.task_id for s in spans} == {t.id for t in tasks}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        (
            {"concurrency_strategy": tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_NEWEST},
            "concurrency_strategy",
            "needs a concurrency_key",
        ),
        ({"concurrency_limit": 2}, "concurrency_limit", "needs a concurrency_key"),
        ({"concurrency_key": "k"}, "concurrency_limit", "must be in [1,"),
        (
            {"rate_limit_period": tasks_pb2.RATE_LIMIT_PERIOD_SECOND},
            "rate_limit_period",
            "needs a rate_limit_bucket",
        ),
        ({"rate_limit": 5}, "rate_limit", "needs a rate_limit_bucket"),
    ],
)
async def test_a_half_given_limit_is_refused_naming_what_it_needs(
    admin: Client, fields: dict[str, object], field: str, words: str
) -> None:
    error = await refused(admin.create("echo", {}, start=True, **fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(error)
    assert [v.field for v in found] == [field], found
    assert words in found[0].description
    assert await admin.list_ids() == []
