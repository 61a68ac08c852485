"""Idle streams: N WatchTask streams opened at once on one server, what they
cost while nothing happens, and how fast a change reaches them. Prints one
JSON line on stdout; progress goes to stderr.

    python -m bench.idle [--streams 10000] [--idle-seconds 10]
                         [--per-connection 500] [--database sqlite|postgres]

Two phases, N streams each, on one server:

- distinct: N streams on N distinct tasks (queued with a type no worker
  serves, so nothing happens to them), each confirmed open by its replayed
  QUEUED event; then each task is cancelled (64 calls in flight) and the
  delay from its CancelTask call to its stream's CANCELLED is measured.
- fan_out: N streams on one queued task; then one CancelTask, and the delay
  to each stream's CANCELLED.

For each: open errors by status code, the server's CPU over the idle spell
(% of one core, /proc/PID/stat), its RSS growth from just before the
streams opened, and the delivery delays (p50/p99/max ms) counted from the
CancelTask call and from its reply. A cancel stands for any change: every
event reaches its followers by the same path, and the client knows when a
cancel was asked for. The client process, which reads every stream, shares
the machine: delays include its own scheduling.

Exit codes: 0 success, 1 the run failed (no JSON line), 2 bad arguments,
130 interrupted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio

from bench._client import RPC_TIMEOUT, Client, connect
from bench._harness import (
    ADMIN_PASSWORD,
    ADMIN_USERNAME,
    BenchFailure,
    Database,
    Options,
    Stack,
    main_of,
    running_stack,
)
from bench._procs import log
from bench._stats import summary_ms
from bench.w1 import _load_average
from orchestrator.proto import tasks_pb2, tasks_pb2_grpc

T = TypeVar("T")

TASK_TYPE = "bench-idle-nobody-serves"
IN_FLIGHT = 64
OPEN_SECONDS = 300.0  # for every stream of a phase to be open
DELIVERY_SECONDS = 120.0
SETTLE_SECONDS = 2.0  # after the last stream is open, before the idle spell
QUEUED = tasks_pb2.TASK_EVENT_TYPE_QUEUED
CANCELLED = tasks_pb2.TASK_EVENT_TYPE_CANCELLED


@dataclass(frozen=True)
class Args:
    streams: int
    idle_seconds: float
    per_connection: int
    database: Database
    keep: bool


def parse_args(argv: Sequence[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument(
        "--per-connection",
        type=int,
        default=500,
        help="streams per client connection (the server allows 1000)",
    )
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    ns = parser.parse_args(argv)
    if ns.streams < 1 or ns.idle_seconds <= 0 or not 1 <= ns.per_connection <= 1000:
        parser.error("--streams >= 1, --idle-seconds > 0, 1 <= --per-connection <= 1000")
    return Args(ns.streams, ns.idle_seconds, ns.per_connection, ns.database, ns.keep)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchFailure(f"no VmRSS for pid {pid}")


@dataclass
class Watch:
    """One WatchTask stream: open once its QUEUED event is in, then the
    moment its CANCELLED arrives."""

    call: Any
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    cancelled_at: float | None = None

    async def run(self) -> None:
        try:
            first = await self.call.read()
            if first is aio.EOF or first.type != QUEUED:
                self.error = f"unexpected first message {first}"
                return
            self.opened.set()
            event = await self.call.read()
            if event is not aio.EOF and event.type == CANCELLED:
                self.cancelled_at = time.monotonic()
            else:
                self.error = f"unexpected message {event}"
        except aio.AioRpcError as error:
            self.error = error.code().name
        finally:
            self.opened.set()


class Streams:
    """Connections of their own for the streams: channels with a private
    subchannel pool, so each is its own HTTP/2 connection."""

    def __init__(self, address: str, count: int, metadata: Any) -> None:
        self.channels = [
            aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)
        ]
        self.stubs = [tasks_pb2_grpc.TaskServiceStub(c) for c in self.channels]
        self.metadata = metadata

    def watch(self, index: int, per_connection: int, task_id: str) -> Watch:
        stub = self.stubs[index // per_connection]
        request = tasks_pb2.WatchTaskRequest(id=task_id)
        return Watch(stub.WatchTask(request, metadata=self.metadata))

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels))


async def bounded(calls: Sequence[Awaitable[T]]) -> list[T]:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Awaitable[T]) -> T:
        async with limit:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


async def queued_task(client: Client) -> str:
    task = await client.tasks.CreateTask(
        tasks_pb2.CreateTaskRequest(type=TASK_TYPE),
        metadata=client.metadata,
        timeout=RPC_TIMEOUT,
    )
    await client.tasks.StartTask(
        tasks_pb2.StartTaskRequest(id=task.id), metadata=client.metadata, timeout=RPC_TIMEOUT
    )
    return task.id


async def cancel(client: Client, task_id: str) -> tuple[float, float]:
    """When the CancelTask call was made and when its reply came."""
    sent = time.monotonic()
    await client.tasks.CancelTask(
        tasks_pb2.CancelTaskRequest(id=task_id, reason="bench"),
        metadata=client.metadata,
        timeout=RPC_TIMEOUT,
    )
    return sent, time.monotonic()


async def phase(
    name: str, stack: Stack, client: Client, args: Args, task_ids: list[str]
) -> dict[str, Any]:
    assert stack.server is not None
    pid = stack.server.pid
    rss_before = rss_bytes(pid)
    connections = math.ceil(args.streams / args.per_connection)
    streams = Streams(stack.address, connections, client.metadata)
    try:
        log(f"{name}: opening {args.streams} streams at once on {connections} connections")
        started = time.monotonic()
        watches = [
            streams.watch(i, args.per_connection, task_ids[i % len(task_ids)])
            for i in range(args.streams)
        ]
        readers = [asyncio.create_task(w.run()) for w in watches]
        async with asyncio.timeout(OPEN_SECONDS):
            await asyncio.gather(*(w.opened.wait() for w in watches))
        open_seconds = time.monotonic() - started
        errors = Counter(w.error for w in watches if w.error is not None)
        log(f"{name}: open in {open_seconds:.1f} s, errors {dict(errors)}")

        await asyncio.sleep(SETTLE_SECONDS)
        stack.check_alive()
        cpu_before = stack.server.cpu_seconds()
        idle_started = time.monotonic()
        await asyncio.sleep(args.idle_seconds)
        cpu_after = stack.server.cpu_seconds()
        idle_elapsed = time.monotonic() - idle_started
        rss = rss_bytes(pid)
        cpu_percent = (
            None
            if cpu_before is None or cpu_after is None
            else round((cpu_after - cpu_before) * 100 / idle_elapsed, 2)
        )
        log(f"{name}: idle CPU {cpu_percent}% of a core, RSS {rss / 2**20:.0f} MiB")

        log(f"{name}: cancelling {len(task_ids)} task(s)")
        cancels = await bounded([cancel(client, t) for t in task_ids])
        async with asyncio.timeout(DELIVERY_SECONDS):
            await asyncio.gather(*readers)
        by_task = dict(zip(task_ids, cancels, strict=True))
        heard = [
            (w.cancelled_at, by_task[task_ids[i % len(task_ids)]])
            for i, w in enumerate(watches)
            if w.cancelled_at is not None
        ]
        errors = Counter(w.error for w in watches if w.error is not None)
        if not heard:
            raise BenchFailure(f"{name}: no stream heard its task's cancel: {dict(errors)}")
        after_call = [at - sent for at, (sent, _) in heard]
        # The event may come in before the reply that follows its commit: 0.
        after_reply = [max(0.0, at - replied) for at, (_, replied) in heard]
        growth = rss - rss_before
        return {
            "tasks": len(task_ids),
            "open_seconds": round(open_seconds, 2),
            "errors": dict(errors),
            "idle_cpu_percent_of_core": cpu_percent,
            "rss_growth_mib": round(growth / 2**20, 1),
            "rss_growth_kib_per_stream": round(growth / 1024 / args.streams, 1),
            "delivered": len(heard),
            "delivery_after_call_ms": _delays(after_call),
            "delivery_after_reply_ms": _delays(after_reply),
            "cancel_call_ms": _delays([replied - sent for sent, replied in cancels]),
        }
    finally:
        await streams.close()


def _delays(seconds: list[float]) -> dict[str, float]:
    return {**summary_ms(seconds), "max": round(max(seconds) * 1000, 2)}


async def measure(stack: Stack, args: Args) -> dict[str, Any]:
    assert stack.server is not None
    client = await connect(stack.address, ADMIN_USERNAME, ADMIN_PASSWORD)
    try:
        load_start = _load_average()
        await asyncio.sleep(SETTLE_SECONDS)
        fresh_rss = rss_bytes(stack.server.pid)
        log(f"fresh server RSS {fresh_rss / 2**20:.0f} MiB; queueing {args.streams + 1} tasks")
        task_ids = await bounded([queued_task(client) for _ in range(args.streams + 1)])
        distinct = await phase("distinct", stack, client, args, task_ids[1:])
        fan_out = await phase("fan_out", stack, client, args, task_ids[:1])
        return {
            "benchmark": "idle",
            "database": args.database,
            "streams": args.streams,
            "connections": math.ceil(args.streams / args.per_connection),
            "idle_seconds": args.idle_seconds,
            "fresh_rss_mib": round(fresh_rss / 2**20, 1),
            "distinct": distinct,
            "fan_out": fan_out,
            "load_average": {"start": load_start, "end": _load_average()},
            "cpus": os.cpu_count(),
            "grpc": grpc.__version__,
        }
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def run() -> dict[str, Any]:
        with running_stack(Options(database=args.database, slots=1, keep=args.keep)) as stack:
            return asyncio.run(measure(stack, args))

    return main_of(run)


if __name__ == "__main__":
    sys.exit(main())
