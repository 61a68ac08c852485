"""W1 with dashboard tabs open, and without: what watching costs the server.

Each round runs W1 twice on fresh stacks, both with the HTTP listener on:
once with TABS browser-like live connections (server-sent events, signed
in with a cookie, as app.js opens them) held open for the whole run, once
with none. The tabs watch a workflow run that keeps changing while W1 runs
(a chain of short `sleep` nodes reporting progress, started in both arms so
that only the tabs differ), or with `--page overview` the overview, which
is rendered again after any change anywhere. The order flips each round so
the machine's drift falls on both. Prints one JSON line on stdout; progress
goes to stderr.

    python -m bench.dashboard_tabs [--tasks 3000] [--rounds 3] [--tabs 20]
                                   [--page run|overview] [--database sqlite|postgres]

Exit codes as bench.w1's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import re
import statistics
import sys
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench import w1
from bench._harness import ADMIN_PASSWORD, ADMIN_USERNAME, Options, Stack, main_of, running_stack
from bench._procs import log
from orchestrator import client as sdk

DASHBOARD = re.compile(r"dashboard on http://127\.0\.0\.1:(\d+)/")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# Long enough to outlast a W1 run of a few thousand tasks at either speed.
CHAIN_NODES = 120
NODE_SECONDS = 0.5


@dataclass(frozen=True)
class Args:
    base: w1.Args
    rounds: int
    tabs: int
    page: str


def parse(argv: Sequence[str] | None) -> Args:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard_tabs", description=__doc__)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tabs", type=int, default=20)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--page", choices=("run", "overview"), default="run")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    ns = parser.parse_args(argv)
    if min(ns.tasks, ns.rounds, ns.tabs, ns.slots) < 1:
        parser.error("every count must be at least 1")
    base = w1.parse_args(
        ["--tasks", str(ns.tasks), "--slots", str(ns.slots), "--database", ns.database]
    )
    return Args(replace(base, metrics=True), ns.rounds, ns.tabs, ns.page)


def sign_in(port: int) -> str:
    """The session cookie, from /login's form as a browser posts it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/login")
        reply = connection.getresponse()
        page = reply.read().decode()
        sign_in_cookie = _cookie(reply, "orchestrator_sign_in")
        match = CSRF.search(page)
        assert match, "no csrf_token on /login"
        form = urllib.parse.urlencode(
            {"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD, "csrf_token": match[1]}
        )
        connection.request(
            "POST",
            "/login",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"orchestrator_sign_in={sign_in_cookie}",
            },
        )
        reply = connection.getresponse()
        reply.read()
        assert reply.status == 303, f"sign-in answered {reply.status}"
        return _cookie(reply, "orchestrator_session")
    finally:
        connection.close()


def _cookie(reply: http.client.HTTPResponse, name: str) -> str:
    for header in reply.headers.get_all("set-cookie") or []:
        key, _, rest = header.partition("=")
        if key == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie")


class Tabs:
    """Open live connections, each read to the end as a browser would."""

    def __init__(self) -> None:
        self.regions = 0
        self._readers: list[asyncio.Task[None]] = []

    async def open(self, port: int, path: str, cookie: str, count: int) -> None:
        for number in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                (
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Accept: text/event-stream\r\nCookie: orchestrator_session={cookie}\r\n\r\n"
                ).encode()
            )
            await writer.drain()
            self._readers.append(
                asyncio.create_task(self._read(reader, writer), name=f"tab-{number}")
            )

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                self.regions += chunk.count(b"event: region")
        finally:
            writer.close()

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await reader


async def start_chain(stack: Stack) -> str:
    """A run that changes all through the measurement."""
    user = sdk.Client(stack.address)
    try:
        await user.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        nodes = [
            {"id": f"step{i}", "type": "sleep", "input": {"seconds": NODE_SECONDS}}
            for i in range(CHAIN_NODES)
        ]
        edges = [{"source": f"step{i}", "target": f"step{i + 1}"} for i in range(CHAIN_NODES - 1)]
        workflow = await user.workflows.create("watched", {"nodes": nodes, "edges": edges})
        stream = user.workflows.execute(workflow.id)
        async for _ in stream:
            break
        run_id = stream.run_id
        await stream.aclose()
        assert run_id, "the run did not start"
        return run_id
    finally:
        await user.close()


@contextlib.asynccontextmanager
async def watched(stack: Stack, args: Args, tabs: int) -> AsyncIterator[Tabs]:
    assert stack.server is not None
    port = int(stack.server.wait_for_line(DASHBOARD, 10).group(1))
    run_id = await start_chain(stack)
    opened = Tabs()
    if tabs:
        cookie = await asyncio.to_thread(sign_in, port)
        path = f"/live/runs/{run_id}" if args.page == "run" else "/live/"
        await opened.open(port, path, cookie, tabs)
        log(f"{tabs} tabs open on {path}")
    try:
        yield opened
    finally:
        await opened.close()


def one(args: Args, tabs: int) -> dict[str, Any]:
    options = Options(database=args.base.database, slots=args.base.slots, metrics=True)
    with running_stack(options) as stack:
        token = asyncio.run(w1.bootstrap(stack))
        stack.start_worker(token)

        async def measured() -> dict[str, Any]:
            async with watched(stack, args, tabs) as opened:
                line = await w1.measure(stack, args.base)
                line["regions_received"] = opened.regions
                return line

        return asyncio.run(measured())


def run(args: Args) -> dict[str, Any]:
    rates: dict[str, list[float]] = {"closed": [], "open": []}
    cpu: dict[str, list[float]] = {"closed": [], "open": []}
    regions: list[int] = []
    for round_number in range(1, args.rounds + 1):
        order = (("closed", 0), ("open", args.tabs))
        for name, tabs in order if round_number % 2 else reversed(order):
            log(f"round {round_number}: tabs {name}")
            line = one(args, tabs)
            rates[name].append(line["e2e_tasks_per_s"])
            cpu[name].append(line["server_cpu_ms_per_task"])
            if tabs:
                regions.append(line["regions_received"])
    closed_rate = statistics.median(rates["closed"])
    open_rate = statistics.median(rates["open"])
    return {
        "benchmark": "W1 with dashboard tabs open",
        "page": args.page,
        "tabs": args.tabs,
        "tasks": args.base.tasks,
        "database": args.base.database,
        "rounds": args.rounds,
        "closed_tasks_per_s": rates["closed"],
        "open_tasks_per_s": rates["open"],
        "closed_server_cpu_ms_per_task": cpu["closed"],
        "open_server_cpu_ms_per_task": cpu["open"],
        # Proof the tabs were live: region updates they received, per round.
        "regions_received": regions,
        "throughput_drop_percent": round(100 * (1 - open_rate / closed_rate), 1),
        "server_cpu_increase_percent": round(
            100 * (statistics.median(cpu["open"]) / statistics.median(cpu["closed"]) - 1), 1
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    return main_of(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
