"""Runs cancelled while their nodes complete, and nodes that fail while their
siblings complete, many at once on PostgreSQL (issue 9: "deadlock
detected" aborted a worker's report transaction and ended its stream).

Every transaction over runs and their tasks takes its locks in one order
(engine/runs.py), and the conflicts no order removes are run again inside
the server: no worker stream closes, every call answers as documented, and
every run ends consistently.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import grpc
import pytest
from grpc import aio

from orchestrator.proto import tasks_pb2, workflows_pb2
from tests.e2e.conftest import CONNECTED, Client, WorkerFactory, read_rest, read_until
from tests.e2e.workflow_helpers import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_SUCCEEDED,
    Flows,
    edge,
    is_event,
    node,
)
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres

RUNS = 24
FAN_OUT = 6
WORKERS = 2
FINISHED_NODE = {
    workflows_pb2.NODE_STATUS_SUCCEEDED,
    workflows_pb2.NODE_STATUS_FAILED,
    workflows_pb2.NODE_STATUS_SKIPPED,
    workflows_pb2.NODE_STATUS_CANCELLED,
}
LIVE_TASK = (tasks_pb2.TASK_STATUS_QUEUED, tasks_pb2.TASK_STATUS_RUNNING)


def fan(failing: bool) -> tuple[list[workflows_pb2.Node], list[workflows_pb2.Edge]]:
    """A root, FAN_OUT children that run at once, and a join; with `failing`,
    one child fails (and so cancels its siblings) while the others complete."""
    children = [node(f"c{i}", "echo", {"i": i}) for i in range(FAN_OUT)]
    if failing:
        children[0] = node("c0", "fail", {"message": "planned"}, max_attempts=1)
    nodes = [node("root"), *children, node("join")]
    edges = [edge("root", c.id) for c in children] + [edge(c.id, "join") for c in children]
    return nodes, edges


async def cancel_while_nodes_complete(flows: Flows, workflow_id: str) -> Any:
    """Starts a run, cancels it as soon as its children are running, and
    reads its stream to the end."""
    call, started = await flows.start(workflow_id, {})
    await read_until(call, is_event("NODE_SUCCEEDED", "root"))
    await asyncio.sleep(random.uniform(0, 0.05))  # spread the cancels over the children's reports
    try:
        await flows.cancel(started.run_id, "stop")
    except aio.AioRpcError as error:
        # The run may have ended first; nothing else is an acceptable answer.
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
    await read_rest(call)
    return started.run_id


async def fail_while_siblings_complete(flows: Flows, workflow_id: str) -> Any:
    call, started = await flows.start(workflow_id, {})
    await read_rest(call)
    return started.run_id


async def test_runs_end_consistently_and_no_worker_stream_closes(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    workers = [await start_worker("--demo", "--slots", "8") for _ in range(WORKERS)]
    flows = Flows(admin)
    cancelled = await flows.create("cancelled-fan", *fan(failing=False))
    failing = await flows.create("failing-fan", *fan(failing=True))

    run_ids = await asyncio.gather(
        *(cancel_while_nodes_complete(flows, cancelled.id) for _ in range(RUNS)),
        *(fail_while_siblings_complete(flows, failing.id) for _ in range(RUNS)),
    )

    for index, run_id in enumerate(run_ids):
        run = await flows.run(run_id)
        expected = {RUN_CANCELLED, RUN_SUCCEEDED} if index < RUNS else {RUN_FAILED}
        assert run.status in expected, run
        assert {n.node_id for n in run.nodes if n.status not in FINISHED_NODE} == set(), run
        for run_node in run.nodes:
            if run_node.task_id:
                task = await admin.get(run_node.task_id)
                assert task.status not in LIVE_TASK, (run_id, run_node, task)
    for status in LIVE_TASK:
        assert (await admin.list(status=status)).tasks == []

    for worker in workers:
        connects = [line for line in worker.lines if CONNECTED.search(line)]
        assert len(connects) == 1, f"the worker's stream was closed:\n{worker.log}"
    log = orchestrator.log
    assert "worker disconnected" not in log
    assert "unexpected error" not in log
    assert "worker reports failed" not in log
    print("conflicts run again:", log.count("transaction conflicted"))
