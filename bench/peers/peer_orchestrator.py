"""Orchestrator as one more peer of the shared peer harness (../shared/peers).

Copied next to the harness's bench_common.py and run by run_orchestrator.sh
with the project's interpreter and checkout on the path (it needs the
`orchestrator` package and `bench._procs`):

    python peer_orchestrator.py token   # prints a worker API token (admin login)
    orchestrator worker peer_orchestrator:make_worker   # the worker, slots = BENCH_CONC
    python peer_orchestrator.py         # the client: bench_common.run_client

Used as a user would: the client logs in and submits each task with
`client.tasks.create(..., start=True)` and the SDK's defaults (so an
idempotency key per task); the worker is `orchestrator.worker.Worker` with
an async handler whose first statement is `bench_common.record`.

The JSON line gains the server's and the worker's CPU per task: utime +
stime from /proc/PID/stat of BENCH_SERVER_PID and BENCH_WORKER_PID, read
just before the first measured enqueue and after the last task started
(the harness's own end of the run), divided by N. PostgreSQL's backends
are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
from typing import Any

from bench_common import record, run_client

from bench._procs import process_cpu_seconds
from orchestrator import __version__
from orchestrator.client import Client
from orchestrator.worker import TaskContext, Worker

TASK_TYPE = "bench-noop"
URL = os.environ.get("ORCHESTRATOR_URL", "127.0.0.1:50051")
USERNAME = os.environ.get("BENCH_ADMIN_USERNAME", "admin")
PASSWORD = os.environ.get("BENCH_ADMIN_PASSWORD", "bench-password-1")
DATABASE = os.environ.get("BENCH_DATABASE", "sqlite")


def make_worker() -> Worker:
    worker = Worker(name="bench-peer", slots=int(os.environ.get("BENCH_CONC", 10)))

    @worker.task(TASK_TYPE)
    async def noop(ctx: TaskContext, input: dict[str, Any]) -> None:
        # A Struct carries numbers as doubles: i comes back as 5.0.
        record(int(input["i"]), input["enq_ts"])

    return worker


async def worker_token() -> str:
    async with Client(URL) as client:
        await client.login(USERNAME, PASSWORD)
        return (await client.tokens.create("bench-peer", "worker")).token


def cpu_snapshot() -> dict[str, float | None]:
    """CPU seconds so far of the server and the worker (pids from run_orchestrator.sh)."""
    pids = {name: os.environ.get(f"BENCH_{name.upper()}_PID") for name in ("server", "worker")}
    return {name: process_cpu_seconds(int(pid)) if pid else None for name, pid in pids.items()}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


async def client_main() -> int:
    client = Client(URL)
    await client.login(USERNAME, PASSWORD)
    n = int(os.environ.get("BENCH_N", 5000))
    start: dict[str, Any] = {}

    async def enqueue(i: int, enq_ts: float) -> None:
        if i == 0:  # the measured phase begins (i == -1 is the warm-up task)
            start.update(cpu=cpu_snapshot(), load=load_average())
        await client.tasks.create(TASK_TYPE, {"i": i, "enq_ts": enq_ts}, start=True)

    # run_client prints its JSON line at the end of the measured phase; it is
    # caught here so that the CPU read at that moment can be added to it.
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = await run_client(f"orchestrator-{DATABASE}", enqueue)
    finally:
        end_cpu = cpu_snapshot()
        end_load = load_average()
        await client.close()
    for line in out.getvalue().splitlines():
        if line.startswith("{") and "error" not in (result := json.loads(line)):
            result.update(extras(n, start, end_cpu, end_load))
            line = json.dumps(result)
        print(line, flush=True)
    return code


def extras(
    n: int, start: dict[str, Any], end_cpu: dict[str, float | None], end_load: float
) -> dict[str, Any]:
    per_task: dict[str, float | None] = {}
    for name, after in end_cpu.items():
        before = start["cpu"][name]
        ms = None if before is None or after is None else (after - before) * 1000 / n
        per_task[f"{name}_cpu_ms_per_task"] = None if ms is None else round(ms, 3)
    return {
        **per_task,
        "load_avg_1m": {"start": start["load"], "end": end_load},
        "path": "sdk",
        "in_flight": 1,
        "database": DATABASE,
        "concurrency": int(os.environ.get("BENCH_CONC", 10)),
        "durable_broker": True,
        "version": __version__,
    }


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "client"
    if command == "token":
        print(asyncio.run(worker_token()))
        return 0
    return asyncio.run(client_main())


if __name__ == "__main__":
    sys.exit(main())
