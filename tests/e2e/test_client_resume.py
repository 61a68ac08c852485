"""A server crash and restart, as the client lives through it: watch streams
reconnect and resume from the last sequence they saw, so every event arrives
exactly once and in order; calls that are safe to repeat wait for the server
to come back; the others fail at once with Unavailable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import errors
from orchestrator.client import (
    Client,
    RunStatus,
    RunStream,
    TaskEvent,
    TaskEventType,
    TaskStatus,
    WorkflowEvent,
)
from tests.e2e.conftest import CONNECTED, REPO, SERVER_ENV
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

# Short leases: the new server re-queues what the dead one had handed out soon.
RESTART_ENV = {
    **SERVER_ENV,
    "ORCHESTRATOR_LEASE_SECONDS": "2",
    "ORCHESTRATOR_HEARTBEAT_SECONDS": "0.5",
}
SLEEP = {"nodes": [{"id": "nap", "type": "sleep", "input": {"seconds": 2}}], "edges": []}
FOLLOW_TIMEOUT = 60
# Generous: a loaded CI machine starts a server slowly; a healthy one in about two seconds.
STARTUP_TIMEOUT = 60


class Noticed(logging.Handler):
    """Sets an event when the client logs a line containing `text`."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.INFO)
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
def retries_noticed() -> Iterator[Noticed]:
    logger = logging.getLogger("orchestrator.client")
    handler = Noticed("retrying")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def collect(stream: Any, into: list[Any], progressed: asyncio.Event) -> None:
    async with stream:
        async for event in stream:
            into.append(event)
            if len([e for e in into if "PROGRESS" in e.type.value]) >= 2:
                progressed.set()


async def start_worker(client: Client, address: str, database_url: str) -> ServerProcess:
    secret = (await client.tokens.create("restart worker", "worker")).token
    worker = ServerProcess(
        database_url,
        env={"ORCHESTRATOR_URL": address, "ORCHESTRATOR_TOKEN": secret},
        args=("worker", "--demo"),
        cwd=REPO,
    ).launch()
    await asyncio.to_thread(worker.wait_for_log, CONNECTED, STARTUP_TIMEOUT)
    return worker


async def test_a_server_restart_is_invisible_to_watchers_and_safe_calls(
    database_url: str, retries_noticed: Noticed
) -> None:
    first = ServerProcess(database_url, env=RESTART_ENV).start(STARTUP_TIMEOUT)
    processes = [first]
    try:
        assert first.address
        async with Client(first.address) as client, asyncio.TaskGroup() as background:
            await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
            processes.append(await start_worker(client, first.address, database_url))

            # A task and a workflow run that report progress while the server dies.
            task = await client.tasks.create("sleep", {"seconds": 2}, start=True)
            workflow = await client.workflows.create("restart", SLEEP)
            task_events: list[TaskEvent] = []
            run_events: list[WorkflowEvent] = []
            task_progressed, run_progressed = asyncio.Event(), asyncio.Event()
            task_stream = client.tasks.watch(task.id)
            run_stream: RunStream = client.workflows.execute(workflow.id, {})
            watching = [
                background.create_task(collect(task_stream, task_events, task_progressed)),
                background.create_task(collect(run_stream, run_events, run_progressed)),
            ]
            async with asyncio.timeout(FOLLOW_TIMEOUT):
                await task_progressed.wait()
                await run_progressed.wait()

            first.kill()
            await asyncio.to_thread(first.wait, 30)
            listing = background.create_task(client.tasks.list(type="sleep"))
            async with asyncio.timeout(FOLLOW_TIMEOUT):
                await retries_noticed.seen.wait()  # the listing waits for the server...
            with pytest.raises(errors.Unavailable):
                await client.tasks.cancel(task.id)  # ...a cancel does not: it may have happened
            processes.append(
                ServerProcess(
                    database_url, env={**RESTART_ENV, "ORCHESTRATOR_PORT": str(first.port)}
                ).start(STARTUP_TIMEOUT)
            )

            async with asyncio.timeout(FOLLOW_TIMEOUT):
                page = await listing
                await asyncio.gather(*watching)
            assert task.id in [t.id for t in page.items]

            # Every event once, in order, the same as a fresh replay of the log.
            assert [e.sequence for e in task_events] == list(range(1, len(task_events) + 1))
            assert task_events[-1].type is TaskEventType.SUCCEEDED
            assert TaskEventType.REQUEUED in [e.type for e in task_events]  # it lived through it
            assert [e async for e in client.tasks.watch(task.id)] == task_events
            assert task_stream.reconnects >= 1
            assert (await client.tasks.get(task.id)).status is TaskStatus.SUCCEEDED

            assert [e.sequence for e in run_events] == list(range(1, len(run_events) + 1))
            assert (await client.runs.get(run_stream.run_id)).status is RunStatus.SUCCEEDED
            assert [e async for e in client.runs.watch(run_stream.run_id)] == run_events
            assert run_stream.reconnects >= 1
    finally:
        for process in reversed(processes):
            process.stop()
            print(f"--- {' '.join(process.args)} log:", process.log, sep="\n")
