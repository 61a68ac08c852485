"""Two replicas on one PostgreSQL: work queued on one is run by a worker of
the other, each task once, and a client on either follows it live."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    CONNECTED,
    REPO,
    SERVER_ENV,
    Client,
    WorkerProcess,
    connect,
    kinds,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres


@pytest.fixture
def second_replica(database_url: str, orchestrator: ServerProcess) -> Iterator[ServerProcess]:
    """Another server on the same database, started after the first one
    (which ran the migrations)."""
    process = ServerProcess(database_url, env={**SERVER_ENV, "ORCHESTRATOR_REPLICA_ID": "b"})
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- second replica log:", process.log, sep="\n")


async def _worker_on(replica: ServerProcess, admin: Client, database_url: str) -> WorkerProcess:
    token = await admin.worker_token("replica-worker")
    process = WorkerProcess(
        database_url,
        env={"ORCHESTRATOR_URL": replica.address, "ORCHESTRATOR_TOKEN": token},
        args=("worker", "--demo", "--slots", "4"),
        cwd=REPO,
    )
    process.launch()
    await asyncio.to_thread(process.wait_for_log, CONNECTED, 30)
    return process


async def test_work_queued_on_one_replica_runs_on_the_other(
    database_url: str, orchestrator: ServerProcess, second_replica: ServerProcess, admin: Client
) -> None:
    worker = await _worker_on(second_replica, admin, database_url)
    try:
        tasks = [await admin.create("echo", {"i": i}) for i in range(20)]
        runs = await asyncio.gather(*(admin.execute(t.id) for t in tasks))
    finally:
        await asyncio.to_thread(worker.stop, 15)
    for task, events in zip(tasks, runs, strict=True):
        assert kinds(events) == ["QUEUED", "STARTED", "SUCCEEDED"], events
        final = await admin.get(task.id)
        assert final.status == tasks_pb2.TASK_STATUS_SUCCEEDED
        assert final.output == task.input


async def test_a_client_of_either_replica_sees_the_same_events(
    database_url: str, orchestrator: ServerProcess, second_replica: ServerProcess, admin: Client
) -> None:
    worker = await _worker_on(orchestrator, admin, database_url)
    try:
        async with connect(second_replica) as other:
            task = await admin.create("sleep", {"seconds": 0.3})
            watched = asyncio.create_task(other.watch(task.id))
            executed = await admin.execute(task.id)
            assert kinds(executed)[-1] == "SUCCEEDED"
            assert list(await watched) == executed
    finally:
        await asyncio.to_thread(worker.stop, 15)
