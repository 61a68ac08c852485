"""`orchestrator task create|list|get|run|watch|cancel|delete`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.text import Text

from orchestrator.cli import flow, inputs, live, render
from orchestrator.cli.connect import run
from orchestrator.cli.exits import DONE, FAILED
from orchestrator.cli.options import Input, Limit, Output, OutputFormat, Url
from orchestrator.client import Client, Task, TaskStatus

app = typer.Typer(name="task", help="Tasks: create, run and follow them.", no_args_is_help=True)

TaskType = Annotated[
    str, typer.Argument(metavar="TYPE", help="The task type a worker serves, e.g. echo.")
]
TaskId = Annotated[str, typer.Argument(metavar="ID", help="The task's id.")]
Title = Annotated[str, typer.Option("--title", help="A title (default: the type).")]
Labels = Annotated[
    list[str] | None, typer.Option("--label", "-l", metavar="KEY=VALUE", help="Repeat for more.")
]
Priority = Annotated[int, typer.Option("--priority", help="Higher runs first.")]
MaxAttempts = Annotated[
    int, typer.Option("--max-attempts", min=0, help="Attempts before it fails (0: server default).")
]
Timeout = Annotated[
    int, typer.Option("--timeout", min=0, help="Seconds per attempt (0: no limit).")
]


def _new_task(
    input: str, title: str, labels: list[str] | None, priority: int, attempts: int, timeout: int
) -> dict[str, Any]:
    """CreateTask's fields from the options, checked before any call."""
    return {
        "input": inputs.json_object(input),
        "title": title,
        "labels": dict(inputs.label(item) for item in labels or ()),
        "priority": priority,
        "max_attempts": attempts,
        "timeout_seconds": timeout,
    }


@app.command()
def create(
    type: TaskType,
    input: Input = "{}",
    start: Annotated[bool, typer.Option("--start", help="Queue it at once.")] = False,
    title: Title = "",
    label: Labels = None,
    priority: Priority = 0,
    max_attempts: MaxAttempts = 0,
    timeout: Timeout = 0,
    at: flow.At = None,
    in_: flow.In = None,
    concurrency_key: flow.ConcurrencyKey = "",
    concurrency_limit: flow.ConcurrencyLimit = 0,
    concurrency_strategy: flow.ConcurrencyChoice = flow.Strategy.QUEUE,
    rate_limit_bucket: flow.RateBucket = "",
    rate_limit: flow.Rate = None,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Create a task (PENDING, or QUEUED with --start; with --at or --in it
    waits QUEUED until then)."""

    async def command(client: Client) -> None:
        fields = {
            **_new_task(input, title, label, priority, max_attempts, timeout),
            **flow.start_time(at, in_),
            **flow.limits(
                concurrency_key,
                concurrency_limit,
                concurrency_strategy,
                rate_limit_bucket,
                rate_limit,
            ),
        }
        task = await client.tasks.create(type, start=start, **fields)
        show(task, output)

    run(command, url)


@app.command("run")
def run_task(
    type: TaskType,
    input: Input = "{}",
    title: Title = "",
    label: Labels = None,
    priority: Priority = 0,
    max_attempts: MaxAttempts = 0,
    timeout: Timeout = 0,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Create a task, run it and follow it live to its end.

    Exit code 0 if it succeeded, 1 if it failed or was cancelled. Ctrl+C
    stops following, not the task."""

    async def command(client: Client) -> int:
        fields = _new_task(input, title, label, priority, max_attempts, timeout)
        task = await client.tasks.create(type, start=True, **fields)
        return await follow(client, task, output)

    run(command, url)


@app.command()
def watch(
    task_id: TaskId,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Skip events up to this sequence.")
    ] = 0,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Follow a task live (replaying its past events first) to its end.

    Exit code 0 if it succeeded, 1 if it failed or was cancelled."""

    async def command(client: Client) -> int:
        task = await client.tasks.get(task_id)
        if task.status is TaskStatus.PENDING:
            # Nothing runs it until someone starts it: say so, then wait for
            # that, as a watch started from another terminal expects.
            render.note(
                f"task {task.id} is PENDING: it runs once started "
                f"(orchestrator task start {task.id}); waiting for that, Ctrl+C stops",
                style="yellow",
            )
        return await follow(client, task, output, after)

    run(command, url)


async def follow(client: Client, task: Task, output: OutputFormat, after: int = 0) -> int:
    try:
        async with client.tasks.watch(task.id, after) as events:
            if output is OutputFormat.JSON:
                async for _ in events:
                    pass
            else:
                await live.follow_task(
                    events, f"task {task.id} ({task.type})", f"{task.type} {task.id[:8]}"
                )
    except asyncio.CancelledError:
        render.note(
            f"stopped following; the task goes on: orchestrator task watch {task.id}",
            style="yellow",
        )
        raise
    final = await client.tasks.get(task.id)
    if output is OutputFormat.JSON:
        render.json_document(final)
    else:
        _summary(final)
    return DONE if final.status is TaskStatus.SUCCEEDED else FAILED


def _summary(task: Task) -> None:
    verb = task.status.value.lower()
    line = Text(f"task {task.id} ({task.type}) ")
    line.append(verb, style=render.STATUS_STYLES.get(task.status.value, ""))
    line.append(f" in {render.took(task.started_at, task.finished_at)}" if task.started_at else "")
    if task.attempt > 1:
        line.append(f" after {task.attempt} attempts")
    if task.error:
        line.append(f": {task.error}")
    render.out.print(line)
    if task.output is not None:
        render.out.print(Text(render.pretty_json(task.output)))


@app.command("list")
def list_tasks(
    status: Annotated[
        TaskStatus | None, typer.Option("--status", case_sensitive=False, help="Only these.")
    ] = None,
    type: Annotated[str, typer.Option("--type", help="Only this task type.")] = "",
    label: Annotated[
        str, typer.Option("--label", "-l", metavar="KEY=VALUE", help="Only with this label.")
    ] = "",
    limit: Limit = 20,
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """List tasks, newest first."""

    async def command(client: Client) -> None:
        if label:
            inputs.label(label)
        found = await render.first(
            client.tasks.list_all(status=status, type=type, label=label), limit
        )
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("ID", "TYPE", "STATUS", "ATTEMPT", "PROGRESS", "CREATED", "TITLE"),
            (
                (
                    t.id,
                    t.type,
                    render.status(t.status),
                    str(t.attempt),
                    f"{t.progress}%" if t.progress and not t.status.terminal else "",
                    render.when(t.created_at),
                    t.title,
                )
                for t in found
            ),
            empty="no tasks",
        )

    run(command, url)


@app.command()
def get(task_id: TaskId, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Show one task, input and output included."""

    async def command(client: Client) -> None:
        show(await client.tasks.get(task_id), output)

    run(command, url)


@app.command()
def start(task_id: TaskId, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Queue a PENDING task (one created without --start).

    One already queued or running is left as it is; a finished one is
    refused (exit code 2)."""

    async def command(client: Client) -> None:
        before = await client.tasks.get(task_id)
        task = await client.tasks.start(task_id)
        if before.status is not TaskStatus.PENDING:
            render.note(f"task {task_id} was already {before.status.value}: nothing to start")
        show(task, output)

    run(command, url)


@app.command()
def cancel(
    task_id: TaskId,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the record.")] = "",
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Cancel a task that has not finished."""

    async def command(client: Client) -> None:
        show(await client.tasks.cancel(task_id, reason), output)

    run(command, url)


@app.command()
def delete(task_id: TaskId, url: Url = None) -> None:
    """Delete a task that is not running, with its events."""

    async def command(client: Client) -> None:
        await client.tasks.delete(task_id)
        render.out.print(f"Deleted task {task_id}.", markup=False)

    run(command, url)


def show(task: Task, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        render.json_document(task)
        return
    render.fields(
        [
            ("id", task.id),
            ("type", task.type),
            ("title", task.title),
            ("status", render.status(task.status)),
            ("attempt", f"{task.attempt} of {task.max_attempts}"),
            # A finished task's last report ("100% slept 10.8s of 12s") is stale news.
            ("progress", _progress(task)),
            ("error", task.error),
            ("labels", ", ".join(f"{k}={v}" for k, v in task.labels.items())),
            ("worker", task.worker_id),
            (
                "workflow run",
                f"{task.workflow_run_id} (node {task.node_id})" if task.node_id else "",
            ),
            ("created", render.when(task.created_at)),
            *flow.described(task),
            ("started", render.when(task.started_at)),
            ("finished", render.when(task.finished_at)),
            ("input", render.pretty_json(task.input)),
            ("output", render.pretty_json(task.output) if task.output is not None else ""),
        ]
    )


def _progress(task: Task) -> str:
    if not task.progress or task.status.terminal:
        return ""
    return f"{task.progress}% {task.progress_message}".strip()
