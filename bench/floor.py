"""The transport's floor: what a task costs in gRPC alone, with no database
and no rules. A bare grpc.aio server (the same library and settings our
server uses) takes a unary "create" and pushes it down one worker's
bidirectional stream; the worker answers each with a "report" on the same
stream. No task is stored, checked, claimed or authenticated.

    python -m bench.floor [--tasks 5000] [--in-flight 1|64]

It bounds what W1 can reach on this machine whatever our server does: the
server's CPU per task here is spent by gRPC and the event loop only. Prints
one JSON line (tasks/s, server and worker CPU ms per task, load average).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from bench._procs import process_cpu_seconds

_SERVICE = "floor.Floor"
_PAYLOAD = b"x" * 100


async def _serve(port: int) -> None:
    pushed: asyncio.Queue[bytes] = asyncio.Queue()

    async def create(request: bytes, context: Any) -> bytes:
        pushed.put_nowait(request)
        return request

    async def work(reports: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async def drain() -> None:
            async for _report in reports:
                pass

        reading = asyncio.ensure_future(drain())
        try:
            while True:
                yield await pushed.get()
        finally:
            reading.cancel()

    handler = grpc.method_handlers_generic_handler(
        _SERVICE,
        {
            "Create": grpc.unary_unary_rpc_method_handler(create),
            "Work": grpc.stream_stream_rpc_method_handler(work),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


def _work(port: int) -> None:
    """The worker: every pushed task answered at once with one report."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    answers: queue.Queue[bytes] = queue.Queue()

    def reports() -> Iterator[bytes]:
        while True:
            yield answers.get()

    for task in channel.stream_stream(f"/{_SERVICE}/Work")(reports()):
        answers.put(task)


def _submit(port: int, tasks: int, in_flight: int) -> float:
    """Seconds to submit `tasks` creates, `in_flight` at a time."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    create = channel.unary_unary(f"/{_SERVICE}/Create")
    create(_PAYLOAD)
    if in_flight == 1:
        # As the peers' harness submits: a blocking call at a time (a future
        # and its callback cost more than the call itself here).
        started = time.perf_counter()
        for _ in range(tasks):
            create(_PAYLOAD)
        return time.perf_counter() - started
    slots = threading.Semaphore(in_flight)
    done = threading.Event()
    finished = [0]
    lock = threading.Lock()

    def answered(_future: Any) -> None:
        slots.release()
        with lock:
            finished[0] += 1
            if finished[0] == tasks:
                done.set()

    started = time.perf_counter()
    for _ in range(tasks):
        slots.acquire()
        create.future(_PAYLOAD).add_done_callback(answered)
    if not done.wait(300):
        raise SystemExit("the floor server stopped answering")
    return time.perf_counter() - started


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--role", choices=["server", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(_serve(args.port))
        return 0
    if args.role == "worker":
        _work(args.port)
        return 0
    port = _free_port()
    me = [sys.executable, "-m", "bench.floor", "--port", str(port), "--role"]
    server = subprocess.Popen([*me, "server"], stdout=subprocess.PIPE, text=True)
    worker = None
    try:
        assert server.stdout is not None
        server.stdout.readline()
        worker = subprocess.Popen([*me, "worker"])
        _submit(port, 200, args.in_flight)  # warm up, and the worker's stream open
        before = {p.pid: process_cpu_seconds(p.pid) or 0.0 for p in (server, worker)}
        seconds = _submit(port, args.tasks, args.in_flight)
        after = {p.pid: process_cpu_seconds(p.pid) or 0.0 for p in (server, worker)}
    finally:
        for process in (worker, server):
            if process is not None:
                process.kill()
                process.wait()

    def per_task_ms(pid: int) -> float:
        return round(1000 * (after[pid] - before[pid]) / args.tasks, 3)

    print(
        json.dumps(
            {
                "bench": "floor",
                "tasks": args.tasks,
                "in_flight": args.in_flight,
                "tasks_per_second": round(args.tasks / seconds, 1),
                "server_cpu_ms_per_task": per_task_ms(server.pid),
                "worker_cpu_ms_per_task": per_task_ms(worker.pid),
                "load_average": os.getloadavg(),
                "grpcio": grpc.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
