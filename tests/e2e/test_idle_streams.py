"""Idle streams cost nothing (issue 10, target 6): hundreds of open
WatchTask streams on tasks where nothing happens leave the server's CPU
idle, and what then happens reaches every one of them.

The CPU time is the server process's own (utime + stime from
/proc/PID/stat): other load on the machine does not add to it. With each
follower re-reading the log every 2 s, these 350 streams took 1.6 s of CPU
in the 6 s (a quarter of a core); fed from memory, 0.05 s."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    STREAM_TIMEOUT,
    Client,
    WorkerFactory,
    kinds,
    read_rest,
)
from tests.support.server import ServerProcess

IDLE_STREAMS = 250  # one per task no worker serves
FAN_OUT_STREAMS = 100  # all on one task
IDLE_SECONDS = 6.0
# The server's CPU over the idle spell: its own timers (dispatch, leases,
# credential checks) stay far below; 250 polling followers went well above.
MAX_IDLE_CPU_SECONDS = 0.25
OPENING = 32  # calls in flight while setting up

QUEUED = tasks_pb2.TASK_EVENT_TYPE_QUEUED

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; the fields after it do not.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bounded(calls: list[Any]) -> list[Any]:
    limit = asyncio.Semaphore(OPENING)

    async def one(call: Any) -> Any:
        async with limit:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def queued(admin: Client, type: str) -> tasks_pb2.Task:
    """A task submitted (QUEUED: its first event is written) that no worker
    takes until one serving `type` connects."""
    task = await admin.create(type)
    return await admin.tasks.StartTask(
        tasks_pb2.StartTaskRequest(id=task.id), metadata=admin.metadata, timeout=CALL_TIMEOUT
    )


async def opened(admin: Client, task_id: str) -> Any:
    """A WatchTask stream from the start, once its replayed QUEUED event is
    in: from then on it only waits."""
    call = admin.watch_call(task_id)
    first = await asyncio.wait_for(call.read(), STREAM_TIMEOUT)
    assert first.type == QUEUED, first
    return call


async def test_idle_streams_cost_no_cpu_and_all_hear_what_happens(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    idle = await bounded([queued(admin, "nobody-serves-this") for _ in range(IDLE_STREAMS)])
    watched = await queued(admin, "echo")
    streams = await bounded([opened(admin, task.id) for task in idle])
    fan_out = await bounded([opened(admin, watched.id) for _ in range(FAN_OUT_STREAMS)])

    before = cpu_seconds(orchestrator.pid)
    started = time.monotonic()
    await asyncio.sleep(IDLE_SECONDS)
    used = cpu_seconds(orchestrator.pid) - before
    elapsed = time.monotonic() - started
    assert used < MAX_IDLE_CPU_SECONDS, (
        f"{IDLE_STREAMS + FAN_OUT_STREAMS} idle streams: the server used {used:.2f} s of CPU "
        f"in {elapsed:.1f} s"
    )

    # A start reaches every follower of the watched task, and its end ends them.
    await start_worker("--demo", "--slots", "1")
    for rest in await asyncio.gather(*(read_rest(call) for call in fan_out)):
        assert kinds(rest) == ["STARTED", "SUCCEEDED"], kinds(rest)

    # So does a change of each idle task, each to its own follower.
    await bounded([admin.cancel(task.id, "done watching") for task in idle])
    for rest in await asyncio.gather(*(read_rest(call) for call in streams)):
        assert kinds(rest) == ["CANCELLED"], kinds(rest)
