"""`orchestrator workflow run|runs|watch|cancel`: workflow runs, followed
live."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.text import Text

from orchestrator.cli import flow, inputs, live, render
from orchestrator.cli.connect import run
from orchestrator.cli.exits import DONE, FAILED
from orchestrator.cli.options import Input, Limit, Output, OutputFormat, Url
from orchestrator.cli.workflows import NameOrId, Version, app
from orchestrator.client import Client, RunStatus, RunStream, WorkflowRun

RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="A workflow run's id.")]


@app.command("run")
def run_workflow(
    workflow: NameOrId,
    input: Input = "{}",
    version: Version = 0,
    at: flow.At = None,
    in_: flow.In = None,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Start a run and follow it live to its end (with --at or --in its
    first nodes wait until then).

    Exit code 0 if it succeeded, 1 if it failed or was cancelled. Ctrl+C
    stops following, not the run."""

    async def command(client: Client) -> int:
        data = inputs.json_object(input)
        when = flow.start_time(at, in_)
        found = await client.workflows.find(workflow)
        if version:
            found = await client.workflows.get(found.id, version)
        stream = client.workflows.execute(found.id, data, version=found.version, **when)
        board = live.RunBoard(found)
        return await _follow(
            client, stream, board, f"workflow {found.name} v{found.version}", output
        )

    run(command, url)


@app.command()
def watch(run_id: RunId, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Follow a workflow run live to its end.

    Exit code 0 if it succeeded, 1 if it failed or was cancelled."""

    async def command(client: Client) -> int:
        current = await client.runs.get(run_id)
        found = await client.workflows.get(current.workflow_id, current.workflow_version)
        stream = client.runs.watch(run_id, current.last_sequence)
        board = live.RunBoard(found, current)
        title = f"run {run_id} of workflow {found.name} v{found.version}"
        return await _follow(client, stream, board, title, output)

    run(command, url)


async def _follow(
    client: Client,
    stream: RunStream,
    board: live.RunBoard,
    title: str,
    output: OutputFormat,
) -> int:
    try:
        async with stream:
            if output is OutputFormat.JSON:
                async for _ in stream:
                    pass
            else:
                await live.follow_run(stream, board, title)
    except asyncio.CancelledError:
        if stream.run_id:
            render.note(
                f"stopped following; the run goes on: orchestrator workflow watch {stream.run_id}",
                style="yellow",
            )
        raise
    final = await client.runs.get(stream.run_id)
    if output is OutputFormat.JSON:
        render.json_document(final)
    else:
        _summary(final, list(board.rows))
    return DONE if final.status is RunStatus.SUCCEEDED else FAILED


def _summary(run: WorkflowRun, order: list[str] | None = None) -> None:
    """The run's outcome, its nodes in `order` (the definition's) if given."""
    rank = {node_id: index for index, node_id in enumerate(order or ())}
    nodes = sorted(run.nodes, key=lambda n: rank.get(n.node_id, len(rank)))
    line = Text(f"run {run.id} ")
    line.append(run.status.value.lower(), style=render.STATUS_STYLES.get(run.status.value, ""))
    line.append(f" in {render.took(run.created_at, run.finished_at)}")
    if run.error:
        line.append(f": {run.error}")
    render.out.print(line)
    render.table(
        ("NODE", "STATUS", "OUTPUT"),
        (
            (
                n.node_id,
                render.status(n.status or ""),
                n.error
                or (json.dumps(n.output, ensure_ascii=False) if n.output is not None else ""),
            )
            for n in nodes
        ),
        empty="no nodes ran",
    )


@app.command()
def runs(
    workflow: Annotated[
        str | None, typer.Argument(metavar="NAME_OR_ID", help="Only this workflow's runs.")
    ] = None,
    status: Annotated[
        RunStatus | None, typer.Option("--status", case_sensitive=False, help="Only these.")
    ] = None,
    limit: Limit = 20,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """List workflow runs, newest first."""

    async def command(client: Client) -> None:
        names = {w.id: w.name async for w in client.workflows.list_all()}
        workflow_id = (await client.workflows.find(workflow)).id if workflow else ""
        found = await render.first(
            client.runs.list_all(workflow_id=workflow_id, status=status), limit
        )
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("RUN", "WORKFLOW", "VERSION", "STATUS", "STARTED", "TOOK"),
            (
                (
                    r.id,
                    names.get(r.workflow_id, r.workflow_id),
                    str(r.workflow_version),
                    render.status(r.status),
                    render.when(r.created_at),
                    render.took(r.created_at, r.finished_at) if r.finished_at else "",
                )
                for r in found
            ),
            empty="no runs",
        )

    run(command, url)


@app.command()
def cancel(
    run_id: RunId,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Cancel a workflow run: running nodes are cancelled, the rest never start."""

    async def command(client: Client) -> None:
        cancelled = await client.runs.cancel(run_id, reason)
        if output is OutputFormat.JSON:
            render.json_document(cancelled)
        else:
            _summary(cancelled)

    run(command, url)
