"""A workflow run survives a server crash (DESIGN §1, §5): the run resumes
from its last checkpoint on a new server over the same database, and every
node succeeds exactly once in the record."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import SERVER_ENV, Client, WorkerFactory, connect, read_until, to_dict
from tests.e2e.conftest import kinds as task_kinds
from tests.e2e.workflow_helpers import (
    RUN_SUCCEEDED,
    Flows,
    count_of,
    edge,
    is_event,
    kinds,
    node,
    node_kinds,
    nodes_of,
    statuses,
    worker_process,
)
from tests.support.server import ServerProcess

# A lease that lapses soon after the crash, so the new server re-queues the
# task the dead one left RUNNING within seconds.
FAST_LEASES = {"ORCHESTRATOR_LEASE_SECONDS": "2", "ORCHESTRATOR_HEARTBEAT_SECONDS": "0.5"}
CHAIN = ["n1", "n2", "n3", "n4"]
SLEEP = 0.7


@pytest.mark.server_env(**FAST_LEASES)
async def test_a_run_resumes_after_the_server_is_killed(
    orchestrator: ServerProcess,
    admin: Client,
    start_worker: WorkerFactory,
    database_url: str,
) -> None:
    old_worker = await start_worker("--demo", "--slots", "2", "--grace", "1")
    flows = Flows(admin)
    workflow = await flows.create(
        "chain",
        [node(n, "sleep", {"seconds": SLEEP}) for n in CHAIN],
        [edge(a, b) for a, b in itertools.pairwise(CHAIN)],
    )
    call, started = await flows.start(workflow.id)
    before = [started, *await read_until(call, is_event("NODE_STARTED", "n2"))]
    run_id = started.run_id
    tasks_before = {e.node_id: e.task_id for e in before if e.task_id}
    assert set(tasks_before) == {"n1", "n2"}
    assert node_kinds(before, "n1") == [
        "NODE_QUEUED",
        "NODE_STARTED",
        "NODE_SUCCEEDED",
        "CHECKPOINT_SAVED",
    ]

    orchestrator.kill()  # SIGKILL, this server's pid only
    assert await asyncio.to_thread(orchestrator.wait, 10) == -9
    call.cancel()
    # The old worker cannot follow the server to its new port: stop it.
    await asyncio.to_thread(old_worker.stop, 15)

    restarted = ServerProcess(database_url, env={**SERVER_ENV, **FAST_LEASES})
    try:
        restarted.start()
        async with connect(restarted) as again:
            token = await again.worker_token("after-the-crash")
            async with worker_process(restarted, token, "--demo", "--slots", "2"):
                replayed = await Flows(again).watch(run_id, 0)
                run = await Flows(again).run(run_id)
                task_events = {
                    n.node_id: await again.watch(n.task_id) for n in run.nodes if n.task_id
                }
                records = {n.node_id: await again.get(n.task_id) for n in run.nodes}
    finally:
        restarted.stop()
        print("--- restarted server log:", restarted.log, sep="\n")

    assert kinds(replayed)[-1] == "RUN_SUCCEEDED"
    assert [e.sequence for e in replayed] == list(range(1, len(replayed) + 1))
    # What was streamed before the crash was durable, unchanged.
    assert replayed[: len(before)] == before
    assert count_of(replayed, "NODE_SUCCEEDED") == dict.fromkeys(CHAIN, 1)
    assert run.status == RUN_SUCCEEDED
    assert statuses(run) == dict.fromkeys(CHAIN, "SUCCEEDED")
    assert all(to_dict(n.output) == {"slept": SLEEP} for n in run.nodes)
    by_id = nodes_of(run)
    # Nodes begun before the crash kept their tasks: nothing was re-created.
    assert {n: by_id[n].task_id for n in tasks_before} == tasks_before
    for node_id in CHAIN:
        names = task_kinds(task_events[node_id])
        assert names.count("SUCCEEDED") == 1, (node_id, names)
        assert names[-1] == "SUCCEEDED", (node_id, names)
        assert records[node_id].status == tasks_pb2.TASK_STATUS_SUCCEEDED
    # n1 had finished before the crash: it never ran again.
    assert task_kinds(task_events["n1"]) == ["QUEUED", "STARTED", "SUCCEEDED"]
    assert records["n1"].attempt == 1
    # n2 was running: its lease lapsed, the new server re-queued it, it ran once more.
    n2 = task_kinds(task_events["n2"])
    assert n2.count("STARTED") == 2 and "REQUEUED" in n2, n2
    requeued = next(e for e in task_events["n2"] if task_kinds([e]) == ["REQUEUED"])
    assert requeued.message == "lease expired"
    assert node_kinds(replayed, "n2").count("NODE_STARTED") == 2
    # The nodes after it ran once, on the new server.
    for node_id in ("n3", "n4"):
        assert task_kinds(task_events[node_id]) == ["QUEUED", "STARTED", "SUCCEEDED"]
