"""ExecuteTask and WatchTask streams (DESIGN §5, "Events"): replay equals the
live feed, replay starts after the asked sequence, and a slow subscriber
loses nothing.

One server (with a 10-event buffer per subscriber) and one demo worker serve
the whole module."""

from __future__ import annotations

import asyncio

import pytest
from grpc import aio

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    STREAM_TIMEOUT,
    Client,
    WorkerFactory,
    WorkerProcess,
    kinds,
    read_rest,
    to_dict,
)
from tests.support.grpc import wait_until
from tests.support.server import ServerProcess
from tests.support.workers import CHATTY_LINES, chatty_line

SUCCEEDED = tasks_pb2.TASK_STATUS_SUCCEEDED

pytestmark = pytest.mark.server_env(STREAM_BUFFER_SIZE="10")


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


def essence(event: tasks_pb2.TaskEvent) -> tuple[object, ...]:
    """What a subscriber reads from an event, the timestamp aside."""
    return (
        event.sequence,
        event.task_id,
        event.type,
        event.status,
        event.attempt,
        event.progress,
        event.message,
        to_dict(event.output) if event.HasField("output") else None,
        event.worker_id,
    )


async def test_watch_replays_what_execute_streamed(
    admin: Client, demo_worker: WorkerProcess
) -> None:
    # A one-second sleep reports progress every 10%: a feed with some substance.
    task = await admin.create("sleep", {"seconds": 1})
    live = await admin.execute(task.id)
    assert kinds(live)[:2] == ["QUEUED", "STARTED"]
    assert kinds(live)[-1] == "SUCCEEDED"
    assert kinds(live).count("PROGRESS") >= 3
    assert [e.sequence for e in live] == list(range(1, len(live) + 1))
    assert to_dict(live[-1].output) == {"slept": 1}

    replayed = await admin.watch(task.id, after_sequence=0)

    assert [essence(e) for e in replayed] == [essence(e) for e in live]
    assert [e.timestamp for e in replayed] == [e.timestamp for e in live]
    for after in (1, 2, len(live) // 2, len(live) - 1):
        tail = await admin.watch(task.id, after_sequence=after)
        assert [essence(e) for e in tail] == [essence(e) for e in live[after:]], after


async def test_watch_after_the_last_event_of_a_finished_task_ends_empty(
    admin: Client, demo_worker: WorkerProcess
) -> None:
    task = await admin.create("echo", {"x": 1})
    live = await admin.execute(task.id)
    assert kinds(live)[-1] == "SUCCEEDED"

    # Nothing after the last event, and the task is finished: the stream ends
    # at once rather than follow a task that will never change.
    tail = await asyncio.wait_for(admin.watch(task.id, after_sequence=live[-1].sequence), 3)

    assert tail == []


async def test_executing_a_finished_task_starts_a_new_execution(
    admin: Client, demo_worker: WorkerProcess
) -> None:
    task = await admin.create("echo", {"round": 1})
    first = await admin.execute(task.id)
    assert kinds(first) == ["QUEUED", "STARTED", "SUCCEEDED"]

    second = await admin.execute(task.id)

    assert kinds(second) == ["QUEUED", "STARTED", "SUCCEEDED"]
    assert [e.sequence for e in second] == [4, 5, 6]
    assert second[1].attempt == 1
    everything = await admin.watch(task.id)
    assert [essence(e) for e in everything] == [essence(e) for e in first + second]
    done = await admin.get(task.id)
    assert (done.status, done.attempt, done.last_sequence) == (SUCCEEDED, 1, 6)


# The watcher's channel takes in little data ahead of what the test reads, so
# the server cannot push the feed through while the test holds back: its
# subscriber falls behind for real.
SLOW_READER = (("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024))


async def test_slow_subscriber_loses_no_event(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    task = await admin.create("chatty", {"lines": CHATTY_LINES}, start=True)
    async with aio.insecure_channel(orchestrator.address or "", options=SLOW_READER) as slow:
        watch = Client(slow, admin.metadata).watch_call(task.id)
        first = await asyncio.wait_for(watch.read(), STREAM_TIMEOUT)
        assert (first.sequence, first.type) == (1, tasks_pb2.TASK_EVENT_TYPE_QUEUED)

        # Only now can the task run; the watcher reads nothing until it is
        # over, so its 10-event buffer overflows and it must catch up from the log.
        await start_worker("tests.support.workers:worker")

        async def finished() -> bool:
            return (await admin.get(task.id)).status == SUCCEEDED

        await wait_until(finished, timeout=STREAM_TIMEOUT, interval=0.1)
        rest = await read_rest(watch)

    events = [first, *rest]
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert kinds(events) == ["QUEUED", "STARTED", *["LOG"] * CHATTY_LINES, "SUCCEEDED"]
    assert [e.message for e in events[2:-1]] == [chatty_line(i) for i in range(CHATTY_LINES)]
    assert to_dict(events[-1].output) == {"lines": CHATTY_LINES}
    assert (await admin.get(task.id)).last_sequence == len(events)
