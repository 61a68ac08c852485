"""W1: one client submits N no-op (echo) tasks; one worker process with S
slots runs them. Prints one JSON line on stdout; progress goes to stderr.

    python -m bench.w1 [--tasks 5000] [--slots 10] [--in-flight 64]
                       [--path sdk|raw] [--database sqlite|postgres]
                       [--concurrency-keys K --concurrency-limit L] [--metrics]

`--path sdk` (the default) creates each task as a user does, through the
SDK's `tasks.create` (with the idempotency key it sends by default);
`--path raw` sends prebuilt requests on the generated stub, without a key.

Exit codes: 0 success (the JSON line was printed), 1 the run failed (a task
failed, went missing or did not finish in time; a process died; no JSON
line), 2 bad arguments, 130 interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import timestamp_pb2

from bench._client import Client, CreateOne, Submission, connect, echo_requests, sdk_create, submit
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
from orchestrator import client as sdk
from orchestrator.proto import tasks_pb2

WORKER_NAME = "bench-w1"
WORKER_CONNECT_SECONDS = 60.0


@dataclass(frozen=True)
class Args:
    tasks: int
    slots: int
    in_flight: int
    path: str
    database: str
    warmup: int
    timeout: float
    poll: float
    keep: bool
    profile_server: Path | None
    # Every task names one of `concurrency_keys` keys (0: none), raw path.
    concurrency_keys: int = 0
    concurrency_limit: int = 0
    # The server's metrics on (ORCHESTRATOR_HTTP_PORT set).
    metrics: bool = False


def parse_args(argv: Sequence[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench.w1", description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="measured tasks (default 5000)")
    parser.add_argument("--slots", type=int, default=10, help="worker slots (default 10)")
    parser.add_argument(
        "--in-flight",
        "--concurrency",
        dest="in_flight",
        type=int,
        default=64,
        help="creates in flight (default 64; 1 = one at a time, as the peer harness submits)",
    )
    parser.add_argument(
        "--path",
        choices=("sdk", "raw"),
        default="sdk",
        help="sdk: the SDK's tasks.create, idempotency key included (default); "
        "raw: prebuilt requests on the generated stub, no key",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--warmup", type=int, default=50, help="tasks run first and not counted (default 50)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for the tasks to finish"
    )
    parser.add_argument(
        "--poll", type=float, default=0.25, help="seconds between completion checks"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    parser.add_argument(
        "--profile-server",
        type=Path,
        metavar="PATH",
        help="run the server under cProfile and write its profile to PATH (slows it down)",
    )
    parser.add_argument(
        "--concurrency-keys",
        type=int,
        default=0,
        help="task k names concurrency key k mod K (default 0: none; implies --path raw)",
    )
    parser.add_argument(
        "--concurrency-limit", type=int, default=5, help="each key's limit (default 5)"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="the server's metrics on (ORCHESTRATOR_HTTP_PORT)"
    )
    ns = parser.parse_args(argv)
    if ns.concurrency_keys < 0 or ns.concurrency_limit < 1:
        parser.error("--concurrency-keys must be >= 0, --concurrency-limit >= 1")
    for name in ("tasks", "slots", "in_flight"):
        if getattr(ns, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if ns.warmup < 0 or ns.timeout <= 0 or ns.poll <= 0:
        parser.error("--warmup must be >= 0, --timeout and --poll > 0")
    return Args(
        tasks=ns.tasks,
        slots=ns.slots,
        in_flight=ns.in_flight,
        path="raw" if ns.concurrency_keys else ns.path,
        database=ns.database,
        warmup=ns.warmup,
        timeout=ns.timeout,
        poll=ns.poll,
        keep=ns.keep,
        profile_server=ns.profile_server.resolve() if ns.profile_server else None,
        concurrency_keys=ns.concurrency_keys,
        concurrency_limit=ns.concurrency_limit,
        metrics=ns.metrics,
    )


async def bootstrap(stack: Stack) -> str:
    """A worker-scoped API token, created by the admin."""
    client = await connect(stack.address, ADMIN_USERNAME, ADMIN_PASSWORD)
    try:
        return await client.create_worker_token("bench")
    finally:
        await client.close()


async def measure(stack: Stack, args: Args) -> dict[str, Any]:
    client = await connect(stack.address, ADMIN_USERNAME, ADMIN_PASSWORD)
    user = sdk.Client(stack.address)
    try:
        version = await client.server_version()
        await user.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        worker = await client.wait_for_worker(
            WORKER_NAME, WORKER_CONNECT_SECONDS, stack.check_alive
        )
        log(f"worker {worker.id} connected ({worker.slots} slots)")
        if args.warmup:
            warmup = creator(args, client, user, args.warmup, key="warmup")
            await run_tasks(client, stack, args, warmup, args.warmup)
            log(f"warm-up: {args.warmup} tasks done")
        create_one = creator(args, client, user, args.tasks)
        lines_before = stack.server_log_lines()
        load_start = _load_average()
        cpu_before = stack.cpu_seconds()
        log(f"submitting {args.tasks} tasks ({args.path} path), {args.in_flight} in flight")
        # Taken when the polls first see nothing left to run, before the full
        # read of the records, so that read is not charged to the run.
        quiet: list[dict[str, float | None]] = []
        submission, records = await run_tasks(
            client,
            stack,
            args,
            create_one,
            args.tasks,
            on_quiet=lambda: quiet.append(stack.cpu_seconds()),
        )
        confirmed = time.time()
        cpu = _cpu_used(cpu_before, quiet[-1])
        load_end = _load_average()
        server_lines = stack.server_log_lines() - lines_before
    finally:
        await user.close()
        await client.close()
    if server_lines:
        log(f"warning: the server logged {server_lines} lines during the measured run")
    line = result(args, version, submission, records, confirmed)
    line.update(cost_fields(cpu, args.tasks, load_start, load_end))
    return line


def creator(args: Args, client: Client, user: sdk.Client, count: int, key: str = "i") -> CreateOne:
    if args.path == "sdk":
        return sdk_create(user, key)
    keyed = (args.concurrency_keys, args.concurrency_limit) if args.concurrency_keys else None
    return client.raw_create(echo_requests(count, key, keyed))


def cost_fields(
    cpu: dict[str, float | None], tasks: int, load_start: float | None, load_end: float | None
) -> dict[str, Any]:
    """The CPU the run used, in total and per task, and the load around it."""
    per_task: dict[str, float | None] = {}
    for name in ("server", "worker"):
        used = cpu.get(name)
        per_task[f"{name}_cpu_ms_per_task"] = (
            None if used is None else round(used * 1000 / tasks, 3)
        )
    return {
        "cpu_seconds": cpu,
        **per_task,
        "load_avg_1m": {"start": load_start, "end": load_end},
    }


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_used(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    used: dict[str, float | None] = {}
    for name, start in before.items():
        end = after.get(name)
        used[name] = None if start is None or end is None else round(end - start, 2)
    return used


async def run_tasks(
    client: Client,
    stack: Stack,
    args: Args,
    create_one: CreateOne,
    count: int,
    on_quiet: Callable[[], None] = lambda: None,
) -> tuple[Submission, dict[str, tasks_pb2.Task]]:
    submission = await submit(create_one, count, args.in_flight)
    took = submission.ended - submission.started
    log(f"submitted {count} in {took:.3f}s ({count / took:.1f}/s)")
    records = await client.wait_until_settled(
        submission.ids,
        seconds=args.timeout,
        poll_seconds=args.poll,
        check_alive=stack.check_alive,
        on_quiet=on_quiet,
    )
    check_succeeded(submission.ids, records)
    return submission, records


def check_succeeded(ids: Sequence[str], records: dict[str, tasks_pb2.Task]) -> None:
    bad = [i for i in ids if records[i].status != tasks_pb2.TASK_STATUS_SUCCEEDED]
    if bad:
        statuses = Counter(tasks_pb2.TaskStatus.Name(records[i].status) for i in ids)
        examples = "; ".join(f"{i}: {records[i].error or '(no error)'}" for i in bad[:5])
        raise BenchFailure(
            f"{len(bad)} of {len(ids)} tasks did not succeed {dict(statuses)}: {examples}"
        )


def _seconds(stamp: timestamp_pb2.Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def result(
    args: Args,
    version: str,
    submission: Submission,
    records: dict[str, tasks_pb2.Task],
    confirmed: float,
) -> dict[str, Any]:
    to_start: list[float] = []
    to_finish: list[float] = []
    for task_id, submitted in zip(submission.ids, submission.submitted_at, strict=True):
        task = records[task_id]
        to_start.append(_seconds(task.started_at) - submitted)
        to_finish.append(_seconds(task.finished_at) - submitted)
    if min(to_start) < 0:
        log(f"warning: a task started {-min(to_start) * 1000:.3f} ms before it was submitted")
    first_submit = min(submission.submitted_at)
    last_finish = max(_seconds(t.finished_at) for t in records.values())
    retried = sum(1 for t in records.values() if t.attempt > 1)
    if retried:
        log(f"warning: {retried} tasks needed more than one attempt")
    n = len(submission.ids)
    return {
        "benchmark": "W1",
        "tasks": n,
        "slots": args.slots,
        "path": args.path,
        "in_flight": args.in_flight,
        "database": args.database,
        "concurrency_keys": args.concurrency_keys,
        "concurrency_limit": args.concurrency_limit if args.concurrency_keys else None,
        "metrics": args.metrics,
        "e2e_tasks_per_s": round(n / (last_finish - first_submit), 1),
        "submit_tasks_per_s": round(n / (submission.ended - submission.started), 1),
        "submit_to_start_ms": summary_ms(to_start),
        "submit_to_finish_ms": summary_ms(to_finish),
        "wall_seconds": round(confirmed - submission.started, 3),
        "warmup_tasks": args.warmup,
        "retried_tasks": retried,
        "server_profiled": args.profile_server is not None,
        "orchestrator_version": version,
        "python_version": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


def run(args: Args) -> dict[str, Any]:
    options = Options(
        database="postgres" if args.database == "postgres" else "sqlite",
        slots=args.slots,
        keep=args.keep,
        profile_path=args.profile_server,
        metrics=args.metrics,
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
