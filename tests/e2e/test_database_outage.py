"""PostgreSQL stopped and started again under load, with two replicas on it
(issue 9: calls answered INTERNAL while the database was down or starting
up, so clients never retried).

A private cluster (tests/support/private_postgres.py), never the shared
one. While it is down, clients see only OK or UNAVAILABLE; once it is back,
both replicas serve again within 10 s, every create they acknowledged is
there, and the workers, whose streams stay open throughout, run all of it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc import aio

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import (
    CONNECTED,
    SERVER_ENV,
    Client,
    WorkerProcess,
    connect,
    to_struct,
)
from tests.support.grpc import wait_until
from tests.support.private_postgres import PrivatePostgres
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres

LOOPS_PER_REPLICA = 3
CALL_TIMEOUT = 15.0
OUTAGE_SECONDS = 3.0
BACK_WITHIN_SECONDS = 10.0
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}


@dataclass
class Load:
    """What the clients of one replica saw."""

    name: str
    codes: Counter[grpc.StatusCode] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)
    last_created_at: float = 0.0  # time.monotonic() of the latest acknowledged create

    async def drive(self, client: Client, stop: asyncio.Event) -> None:
        """Creates and gets, one after the other, until `stop`."""
        while not stop.is_set():
            task = await self._call(
                client.tasks.CreateTask(
                    tasks_pb2.CreateTaskRequest(
                        type="echo", input=to_struct({"by": self.name}), start=True
                    ),
                    metadata=client.metadata,
                    timeout=CALL_TIMEOUT,
                )
            )
            if task is not None:
                self.acknowledged.append(task.id)
                self.last_created_at = time.monotonic()
            if self.acknowledged:
                await self._call(
                    client.tasks.GetTask(
                        tasks_pb2.GetTaskRequest(id=random.choice(self.acknowledged)),
                        metadata=client.metadata,
                        timeout=CALL_TIMEOUT,
                    )
                )
            await asyncio.sleep(0.02)  # a bounded load, outage or not

    async def _call(self, call: object) -> tasks_pb2.Task | None:
        try:
            reply = await call  # type: ignore[misc]
        except aio.AioRpcError as error:
            self.codes[error.code()] += 1
            return None
        self.codes[grpc.StatusCode.OK] += 1
        assert isinstance(reply, tasks_pb2.Task)
        return reply


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    with PrivatePostgres.create() as created:
        try:
            yield created
        finally:
            print("--- private PostgreSQL log:", created.log, sep="\n")


def replica(url: str, name: str) -> ServerProcess:
    return ServerProcess(url, env={**SERVER_ENV, "ORCHESTRATOR_REPLICA_ID": name})


async def test_a_postgres_restart_under_load_answers_unavailable_and_loses_nothing(
    cluster: PrivatePostgres,
) -> None:
    servers = [replica(cluster.url, "a"), replica(cluster.url, "b")]
    workers: list[WorkerProcess] = []
    try:
        for server in servers:  # one after the other: the first one migrates
            await asyncio.to_thread(server.start)
        async with connect(servers[0]) as first, connect(servers[1]) as second:
            for server, client in zip(servers, (first, second), strict=True):
                token = await client.worker_token(f"worker-{server.env['ORCHESTRATOR_REPLICA_ID']}")
                worker = WorkerProcess(server, token, ("--demo", "--slots", "4"))
                workers.append(worker)
                worker.launch()
                await asyncio.to_thread(worker.connected)
            loads = [Load("a"), Load("b")]
            stop = asyncio.Event()
            drivers = [
                asyncio.create_task(load.drive(client, stop))
                for load, client in zip(loads, (first, second), strict=True)
                for _ in range(LOOPS_PER_REPLICA)
            ]
            try:
                await wait_until(lambda: all(len(load.acknowledged) >= 10 for load in loads))
                await asyncio.to_thread(cluster.stop)
                await asyncio.sleep(OUTAGE_SECONDS)  # down this long, under load
                assert all(load.codes[grpc.StatusCode.UNAVAILABLE] for load in loads), loads
                await asyncio.to_thread(cluster.start)
                back = time.monotonic()
                await wait_until(
                    lambda: all(load.last_created_at > back for load in loads),
                    timeout=BACK_WITHIN_SECONDS,
                )
                served_again_after = {
                    load.name: round(load.last_created_at - back, 2) for load in loads
                }
                # Some more work after the restart, then stop.
                settled = [len(load.acknowledged) for load in loads]
                await wait_until(
                    lambda: all(
                        len(load.acknowledged) >= count + 10
                        for load, count in zip(loads, settled, strict=True)
                    )
                )
            finally:
                stop.set()
                await asyncio.gather(*drivers)

            for load in loads:
                assert set(load.codes) <= ANSWERS, (load.name, load.codes)
            acknowledged = [task_id for load in loads for task_id in load.acknowledged]
            done = {tasks_pb2.TASK_STATUS_SUCCEEDED}

            async def all_done() -> bool:
                tasks = [await first.get(task_id) for task_id in acknowledged]
                return all(task.status in done for task in tasks)

            await wait_until(all_done, timeout=60, interval=0.5)
        for server in servers:
            assert "unexpected error" not in server.log, server.log
        for worker in workers:  # an outage does not end a worker's stream
            assert len([line for line in worker.lines if CONNECTED.search(line)]) == 1, worker.log
        print("answers:", {load.name: dict(load.codes) for load in loads})
        print("served again after (s):", served_again_after)
    finally:
        for worker in workers:
            await asyncio.to_thread(worker.finish)
        for server in servers:
            await asyncio.to_thread(server.stop)
            print(f"--- replica {server.env['ORCHESTRATOR_REPLICA_ID']} log:", server.log, sep="\n")
