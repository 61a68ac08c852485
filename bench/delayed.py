"""Delayed tasks: how late after its start time a task starts. One call
queues `--tasks` echo tasks whose delays are spread evenly over `--spread`
seconds (after a first second), one worker runs them, and the server's own
`started_at - not_before` of each is the lateness. Prints one JSON line.

    python -m bench.delayed [--tasks 200] [--spread 10] [--slots 10]
                            [--database sqlite|postgres]

A task started before its time fails the run (exit 1): that is a bug, not
a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2

from bench._client import RPC_TIMEOUT, connect
from bench._harness import ADMIN_PASSWORD, ADMIN_USERNAME, BenchFailure, Options, main_of
from bench._harness import running_stack as stack_of
from bench._procs import log
from bench._stats import summary_ms
from bench.w1 import WORKER_CONNECT_SECONDS, WORKER_NAME, bootstrap
from orchestrator.proto import tasks_pb2

FINISHED = (tasks_pb2.TASK_STATUS_SUCCEEDED, tasks_pb2.TASK_STATUS_FAILED)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.delayed", description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--spread", type=float, default=10.0, help="seconds the delays span")
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ns = parser.parse_args(argv)
    if not 1 <= ns.tasks <= 1000 or ns.spread <= 0 or ns.slots < 1:
        parser.error("--tasks in [1, 1000], --spread > 0, --slots >= 1")
    return ns


def _delay(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(timedelta(seconds=seconds))
    return value


async def measure(address: str, args: argparse.Namespace, check_alive: Any) -> dict[str, Any]:
    client = await connect(address, ADMIN_USERNAME, ADMIN_PASSWORD)
    try:
        await client.wait_for_worker(WORKER_NAME, WORKER_CONNECT_SECONDS, check_alive)
        step = args.spread / args.tasks
        requests = [
            tasks_pb2.CreateTaskRequest(type="echo", start=True, delay=_delay(1 + k * step))
            for k in range(args.tasks)
        ]
        load_start = os.getloadavg()
        reply = await client.tasks.CreateTasks(
            tasks_pb2.CreateTasksRequest(tasks=requests),
            metadata=client.metadata,
            timeout=RPC_TIMEOUT,
        )
        deadline = time.monotonic() + args.spread + 60
        done: dict[str, tasks_pb2.Task] = {}
        while len(done) < len(reply.tasks):
            if time.monotonic() > deadline:
                raise BenchFailure(f"{len(reply.tasks) - len(done)} tasks never finished")
            check_alive()
            await asyncio.sleep(0.5)
            for task in reply.tasks:
                if task.id not in done:
                    now = await client.tasks.GetTask(
                        tasks_pb2.GetTaskRequest(id=task.id),
                        metadata=client.metadata,
                        timeout=RPC_TIMEOUT,
                    )
                    if now.status in FINISHED:
                        done[task.id] = now
    finally:
        await client.close()
    late = [
        (t.started_at.ToDatetime() - t.not_before.ToDatetime()).total_seconds()
        for t in done.values()
    ]
    early = [x for x in late if x < 0]
    if early:
        raise BenchFailure(
            f"{len(early)} tasks started before their time (by up to {-min(early)} s)"
        )
    log(f"{len(late)} delayed tasks started; lateness max {max(late) * 1000:.1f} ms")
    return {
        "bench": "delayed",
        "database": args.database,
        "tasks": args.tasks,
        "spread_seconds": args.spread,
        "lateness_ms": {**summary_ms(late), "max": round(max(late) * 1000, 2)},
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = Options(database=args.database, slots=args.slots)
    with stack_of(options) as stack:
        stack.start_worker(asyncio.run(bootstrap(stack)))
        return asyncio.run(measure(stack.address, args, stack.check_alive))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return main_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
