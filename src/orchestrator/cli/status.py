"""`orchestrator status`: the server, its replicas and workers, the queues,
and why the longest-waiting tasks have not started (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.text import Text

from orchestrator.cli import render
from orchestrator.cli.connect import run
from orchestrator.cli.options import Output, OutputFormat, Url
from orchestrator.cli.times import spoken
from orchestrator.client import Client, ServerStatus

Oldest = Annotated[
    int,
    typer.Option(
        "--oldest", "-n", min=1, max=100, help="Explain this many of the longest-waiting tasks."
    ),
]


def status(url: Url = None, oldest: Oldest = 10, output: Output = OutputFormat.TABLE) -> None:
    """Workers, queues, and why the oldest tasks wait (admins only)."""

    async def command(client: Client) -> None:
        found = await client.status(oldest=oldest)
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        show(found)

    run(command, url)


def show(status: ServerStatus) -> None:
    def age(since: datetime | None) -> str:
        if since is None or status.read_at is None:
            return ""
        return spoken(int((status.read_at - since).total_seconds()))

    render.fields(
        (
            ("server", f"orchestrator {status.version}, up {spoken(status.uptime_seconds)}"),
            ("replica", f"{status.replica_id} (database: {status.database_dialect})"),
            (
                "replicas",
                ", ".join(f"{r.id} (connected {age(r.connected_since)})" for r in status.replicas),
            ),
        )
    )
    _heading(f"Workers on replica {status.replica_id}")
    render.table(
        ("NAME", "ID", "TYPES", "SLOTS USED", "CONNECTED"),
        (
            (
                w.name,
                w.id,
                ", ".join(w.task_types),
                f"{w.busy_slots}/{w.slots}",
                age(w.connected_at),
            )
            for w in status.workers
        ),
        empty="no workers connected to this replica",
    )
    _heading("Queues")
    render.table(
        ("TYPE", "QUEUED", "NOT DUE", "OLDEST WAITING"),
        ((q.type, str(q.queued), str(q.not_due), age(q.oldest_queued_at)) for q in status.queues),
        empty="no queued tasks",
    )
    _heading("Oldest waiting")
    render.table(
        ("TASK", "TYPE", "WAITING", "WHY"),
        (
            (
                t.id,
                t.type,
                age(t.queued_at),
                Text(t.waiting) if t.waiting else Text("about to start", style="dim"),
            )
            for t in status.oldest_waiting
        ),
        empty="no task is waiting",
    )


def _heading(title: str) -> None:
    render.out.print()
    render.out.print(Text(title, style="bold"))
