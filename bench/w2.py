"""W2: R runs of a 10-node workflow of no-op (echo) tasks, shaped
start → 8 parallel → join, started through ExecuteWorkflow with at most C
runs in flight; one worker process with S slots runs the nodes. Prints one
JSON line on stdout; progress goes to stderr.

    python -m bench.w2 [--runs 100] [--slots 10] [--concurrency 10]
                       [--database sqlite|postgres]

Exit codes: 0 success (the JSON line was printed), 1 the run failed (a run
did not succeed or finish in time, a process died, an RPC failed; no JSON
line), 2 bad arguments, 130 interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from bench._client import RPC_TIMEOUT, Client, connect
from bench._harness import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    BenchFailure,
    Options,
    Stack,
    main_of,
    running_stack,
)
from bench._procs import log
from bench._stats import summary_ms
from bench.w1 import (
    WORKER_NAME,  # the harness names its worker so, whichever benchmark runs
    _cpu_used,
    _load_average,
    bootstrap,
    cost_fields,
)
from orchestrator.proto import tasks_pb2, workflows_pb2, workflows_pb2_grpc

WORKER_CONNECT_SECONDS = 60.0
WORKFLOW_NAME = "bench-w2"
WIDTH = 8  # the parallel middle: 1 + WIDTH + 1 = 10 nodes
MIDDLE = [f"p{i}" for i in range(WIDTH)]
NODES = ["start", *MIDDLE, "join"]
EDGES = [("start", p) for p in MIDDLE] + [(p, "join") for p in MIDDLE]
ENDING = {
    workflows_pb2.WORKFLOW_EVENT_TYPE_RUN_SUCCEEDED,
    workflows_pb2.WORKFLOW_EVENT_TYPE_RUN_FAILED,
    workflows_pb2.WORKFLOW_EVENT_TYPE_RUN_CANCELLED,
}


@dataclass(frozen=True)
class Args:
    runs: int
    slots: int
    concurrency: int
    database: str
    warmup: int
    timeout: float
    keep: bool
    profile_server: Path | None


def parse_args(argv: Sequence[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench.w2", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="measured runs (default 100)")
    parser.add_argument("--slots", type=int, default=10, help="worker slots (default 10)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="runs in flight (default 10; 0 = all runs at once)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--warmup", type=int, default=5, help="runs made first and not counted (default 5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for all runs to end"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="PATH",
        help="run the server under cProfile and write its profile to PATH (slows it down)",
    )
    ns = parser.parse_args(argv)
    if ns.runs < 1 or ns.slots < 1:
        parser.error("--runs and --slots must be at least 1")
    if ns.concurrency < 0 or ns.warmup < 0 or ns.timeout <= 0:
        parser.error("--concurrency and --warmup must be >= 0, --timeout > 0")
    return Args(
        runs=ns.runs,
        slots=ns.slots,
        concurrency=ns.concurrency or ns.runs,
        database=ns.database,
        warmup=ns.warmup,
        timeout=ns.timeout,
        keep=ns.keep,
        profile_server=ns.profile_server.resolve() if ns.profile_server else None,
    )


def definition() -> workflows_pb2.WorkflowDefinition:
    """start (takes the run's k) → p0..p7 (each a literal input) → join."""
    nodes = [workflows_pb2.Node(id="start", type="echo", input_expression="{'k': input.k}")]
    for i, node_id in enumerate(MIDDLE):
        literal = struct_pb2.Struct()
        literal.update({"branch": i})
        nodes.append(workflows_pb2.Node(id=node_id, type="echo", input=literal))
    nodes.append(workflows_pb2.Node(id="join", type="echo"))
    edges = [workflows_pb2.Edge(source=s, target=t) for s, t in EDGES]
    return workflows_pb2.WorkflowDefinition(nodes=nodes, edges=edges)


@dataclass(frozen=True)
class Runs:
    """What the client saw of a batch of runs, index k for the k-th run."""

    ids: list[str]
    started_at: list[float]  # time.time() just before each ExecuteWorkflow call
    ended_at: list[float]  # time.time() when each run's ending event arrived


async def execute_runs(
    stub: workflows_pb2_grpc.WorkflowServiceStub,
    client: Client,
    workflow_id: str,
    count: int,
    concurrency: int,
    seconds: float,
) -> Runs:
    """ExecuteWorkflow `count` times with at most `concurrency` streams open,
    each read to its ending event; BenchFailure unless every run succeeded."""
    requests = []
    for k in range(count):
        run_input = struct_pb2.Struct()
        run_input.update({"k": k})
        requests.append(
            workflows_pb2.ExecuteWorkflowRequest(workflow_id=workflow_id, input=run_input)
        )
    ids = [""] * count
    started_at = [0.0] * count
    ended_at = [0.0] * count
    next_index = iter(range(count))

    async def lane() -> None:
        for k in next_index:
            started_at[k] = time.time()
            call = stub.ExecuteWorkflow(requests[k], metadata=client.metadata, timeout=seconds)
            last = None
            # Read to the end of the stream (the server ends it after the
            # run's ending event) rather than cancel it: a clean close.
            async for event in call:
                ids[k] = event.run_id
                if event.type in ENDING:
                    last = event
                    ended_at[k] = time.time()
            if last is None or last.type != workflows_pb2.WORKFLOW_EVENT_TYPE_RUN_SUCCEEDED:
                what = (
                    "no ending event"
                    if last is None
                    else workflows_pb2.WorkflowEventType.Name(last.type)
                )
                raise BenchFailure(f"run {ids[k] or k}: {what} {last.message if last else ''}")

    async with asyncio.timeout(seconds), asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, count)):
            group.create_task(lane())
    return Runs(ids, started_at, ended_at)


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


async def read_records(
    stub: workflows_pb2_grpc.WorkflowServiceStub, client: Client, run_ids: Sequence[str]
) -> tuple[dict[str, workflows_pb2.WorkflowRun], dict[str, tasks_pb2.Task]]:
    """Each run (GetWorkflowRun) and every task (ListTasks), after the fact."""
    runs: dict[str, workflows_pb2.WorkflowRun] = {}
    for run_id in run_ids:
        runs[run_id] = await stub.GetWorkflowRun(
            workflows_pb2.GetWorkflowRunRequest(id=run_id),
            metadata=client.metadata,
            timeout=RPC_TIMEOUT,
        )
    return runs, await client.all_tasks()


@dataclass
class Delays:
    edge: list[float]  # child started - parent finished, every edge of every run
    ready: list[float]  # child started - its last parent finished, every non-root node
    run: list[float]  # run finished - run created (server clock)
    retried: int
    node_record_mismatches: int


def delays(runs: dict[str, workflows_pb2.WorkflowRun], tasks: dict[str, tasks_pb2.Task]) -> Delays:
    """From the server's own records: the tasks' started_at (set when the
    task is claimed for the worker) and finished_at (set in the transaction
    that stores the result and decides the children)."""
    found = Delays([], [], [], 0, 0)
    for run in runs.values():
        if run.status != workflows_pb2.WORKFLOW_RUN_STATUS_SUCCEEDED:
            status = workflows_pb2.WorkflowRunStatus.Name(run.status)
            raise BenchFailure(f"run {run.id} is {status} in the record: {run.error}")
        by_node: dict[str, tasks_pb2.Task] = {}
        for node in run.nodes:
            task = tasks.get(node.task_id)
            if node.status != workflows_pb2.NODE_STATUS_SUCCEEDED or task is None:
                raise BenchFailure(f"run {run.id}: node {node.node_id} did not succeed")
            by_node[node.node_id] = task
            found.retried += task.attempt > 1
            same = (node.started_at, node.finished_at) == (task.started_at, task.finished_at)
            found.node_record_mismatches += not same
        if set(by_node) != set(NODES):
            raise BenchFailure(f"run {run.id} has nodes {sorted(by_node)}")
        for source, target in EDGES:
            found.edge.append(
                _seconds(by_node[target].started_at) - _seconds(by_node[source].finished_at)
            )
        for target in NODES[1:]:
            parents = [s for s, t in EDGES if t == target]
            last_parent = max(_seconds(by_node[p].finished_at) for p in parents)
            found.ready.append(_seconds(by_node[target].started_at) - last_parent)
        found.run.append(_seconds(run.finished_at) - _seconds(run.created_at))
    return found


async def measure(stack: Stack, args: Args) -> dict[str, Any]:
    client = await connect(stack.address, ADMIN_USERNAME, ADMIN_PASSWORD)
    stub = workflows_pb2_grpc.WorkflowServiceStub(client.channel)
    try:
        version = await client.server_version()
        worker = await client.wait_for_worker(
            WORKER_NAME, WORKER_CONNECT_SECONDS, stack.check_alive
        )
        log(f"worker {worker.id} connected ({worker.slots} slots)")
        workflow = await stub.CreateWorkflow(
            workflows_pb2.CreateWorkflowRequest(name=WORKFLOW_NAME, definition=definition()),
            metadata=client.metadata,
            timeout=RPC_TIMEOUT,
        )
        if args.warmup:
            await execute_runs(
                stub, client, workflow.id, args.warmup, args.concurrency, args.timeout
            )
            log(f"warm-up: {args.warmup} runs done")
        lines_before = stack.server_log_lines()
        load_start = _load_average()
        cpu_before = stack.cpu_seconds()
        log(f"executing {args.runs} runs, {args.concurrency} in flight")
        runs = await execute_runs(
            stub, client, workflow.id, args.runs, args.concurrency, args.timeout
        )
        cpu = _cpu_used(cpu_before, stack.cpu_seconds())
        load_end = _load_average()
        stack.check_alive()
        server_lines = stack.server_log_lines() - lines_before
        records, tasks = await read_records(stub, client, runs.ids)
    finally:
        await client.close()
    if server_lines:
        log(f"warning: the server logged {server_lines} lines during the measured runs")
    found = delays(records, tasks)
    if found.retried:
        log(f"warning: {found.retried} node tasks needed more than one attempt")
    if found.node_record_mismatches:
        log(f"warning: {found.node_record_mismatches} nodes' times differ from their tasks'")
    if min(found.edge) < 0:
        log(f"warning: a child started {-min(found.edge) * 1000:.3f} ms before its parent ended")
    wall = max(runs.ended_at) - min(runs.started_at)
    return {
        "benchmark": "W2",
        "runs": args.runs,
        "nodes_per_run": len(NODES),
        "slots": args.slots,
        "concurrency": args.concurrency,
        "database": args.database,
        "runs_per_s": round(args.runs / wall, 2),
        "nodes_per_s": round(args.runs * len(NODES) / wall, 1),
        "parent_end_to_child_start_ms": summary_ms(found.edge),
        "ready_to_start_ms": summary_ms(found.ready),
        "run_duration_ms": summary_ms(found.run),
        "wall_seconds": round(wall, 3),
        "warmup_runs": args.warmup,
        "retried_tasks": found.retried,
        "server_profiled": args.profile_server is not None,
        "orchestrator_version": version,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
        # Per task: every node of every run is one task.
        **cost_fields(cpu, args.runs * len(NODES), load_start, load_end),
    }


def run(args: Args) -> dict[str, Any]:
    options = Options(
        database="postgres" if args.database == "postgres" else "sqlite",
        slots=args.slots,
        keep=args.keep,
        profile_path=args.profile_server,
    )
    with running_stack(options) as stack:
        token = asyncio.run(bootstrap(stack))
        stack.start_worker(token)
        return asyncio.run(measure(stack, args))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return main_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
