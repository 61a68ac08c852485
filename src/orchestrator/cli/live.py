"""Following a task or a run, for people, on stderr: on a terminal a live
progress bar (tasks) or a live table of nodes (runs); otherwise one line per
event, which reads well in a CI log."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator

from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestrator.cli.outage import OUTAGE
from orchestrator.cli.render import err, status
from orchestrator.client import (
    NodeStatus,
    TaskEvent,
    TaskEventType,
    TaskStream,
    Workflow,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowRun,
)

_QUIET_RUN_EVENTS = frozenset({WorkflowEventType.CHECKPOINT_SAVED})


def _task_line(event: TaskEvent) -> Text | None:
    kind = event.type
    if kind is TaskEventType.LOG:
        return Text(f"  │ {event.message}", style="dim")
    if kind is TaskEventType.PROGRESS:
        return Text(f"  {event.progress:3d}% {event.message}".rstrip())
    if kind is TaskEventType.STARTED:
        worker = f" on worker {event.worker_id}" if event.worker_id else ""
        return Text(f"  started, attempt {event.attempt}{worker}")
    if kind is TaskEventType.RETRYING:
        return Text(f"  attempt {event.attempt} failed: {event.message}; retrying", style="yellow")
    if kind is TaskEventType.REQUEUED:
        return Text(f"  queued again: {event.message or 'the worker was lost'}", style="yellow")
    if kind in (TaskEventType.FAILED, TaskEventType.CANCELLED):
        return Text(f"  {kind.value.lower()}: {event.message}", style=status(kind.value).style)
    if kind is TaskEventType.UPDATED:
        return Text(f"  updated: {event.message}", style="dim")
    return Text(f"  {kind.value.lower()}", style=status(event.status.value).style)


class _TaskProgress(Progress):
    """A progress bar with the outage line, if any, under it."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        if (line := OUTAGE.status()) is not None:
            yield line


# A new attempt starts from nothing: the bar of the last one would mislead.
_FRESH_ATTEMPT = frozenset({TaskEventType.STARTED, TaskEventType.REQUEUED, TaskEventType.RETRYING})


async def follow_task(events: TaskStream, title: str, label: str) -> None:
    """Show `events` until the stream ends: `title` heads the lines of a log,
    `label` names the progress bar on a terminal."""
    if not err.is_terminal:
        err.print(Text(title, style="bold"))
        async for event in events:
            if (line := _task_line(event)) is not None:
                err.print(line)
        return
    progress = _TaskProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
    )
    with progress, OUTAGE.shown(), _cleared_if_interrupted(progress.live):
        bar = progress.add_task(label, total=100)
        async for event in events:
            if event.type is TaskEventType.PROGRESS:
                text = f"{label}: {event.message}" if event.message else label
                progress.update(bar, completed=event.progress, description=text)
            elif event.type is TaskEventType.SUCCEEDED:
                progress.update(bar, completed=100, description=f"{label}: succeeded")
            elif (line := _task_line(event)) is not None:
                progress.console.print(line)
            if event.type in _FRESH_ATTEMPT:
                progress.update(bar, completed=0, description=label)
            if event.type in (TaskEventType.FAILED, TaskEventType.CANCELLED):
                # The line above says it all; a bar stuck short of 100% would not.
                progress.update(bar, visible=False)


@contextlib.contextmanager
def _cleared_if_interrupted(live: Live) -> Iterator[None]:
    """Ctrl+C (or any failure) takes the live view off the screen as it
    stops, rather than leaving a frozen spinner or table behind."""
    try:
        yield
    except BaseException:
        live.transient = True
        raise


class RunBoard:
    """The nodes of a run and where each stands."""

    def __init__(self, workflow: Workflow | None, run: WorkflowRun | None = None) -> None:
        self.types = {n.id: n.type for n in workflow.definition.nodes} if workflow else {}
        self.rows: dict[str, dict[str, str]] = {
            node_id: {"status": NodeStatus.PENDING.value, "task": "", "note": ""}
            for node_id in self.types
        }
        for node in run.nodes if run else ():
            row = self.rows.setdefault(node.node_id, {"status": "", "task": "", "note": ""})
            row.update(status=node.status.value if node.status else "", task=node.task_id)
            row["note"] = node.error
        self.run_status = run.status.value if run else "RUNNING"

    def apply(self, event: WorkflowEvent) -> Text | None:
        """Take in an event; the line it deserves in a log, if any."""
        self.run_status = event.status.value
        if event.type in _QUIET_RUN_EVENTS:
            return None
        if not event.node_id:
            note = f": {event.message}" if event.message else ""
            return Text(f"run {event.type.value.removeprefix('RUN_').lower()}{note}")
        row = self.rows.setdefault(event.node_id, {"status": "", "task": "", "note": ""})
        if event.node_status is not None:
            row["status"] = event.node_status.value
        row["task"] = event.task_id or row["task"]
        if event.type is WorkflowEventType.NODE_PROGRESS:
            row["note"] = f"{event.progress}% {event.message}".strip()
        elif event.message:
            row["note"] = event.message
        elif event.type is WorkflowEventType.NODE_SUCCEEDED:
            row["note"] = ""
        line = f"  {event.node_id}: {event.type.value.removeprefix('NODE_').lower()}"
        return Text(f"{line} {row['note']}".rstrip(), style=status(row["status"]).style)

    def table(self) -> Table:
        grid = Table("NODE", "TYPE", "STATUS", "TASK", "", box=None, header_style="bold")
        for node_id, row in self.rows.items():
            grid.add_row(
                Text(node_id),
                Text(self.types.get(node_id, "")),
                status(row["status"]),
                Text(row["task"], style="dim"),
                Text(row["note"]),
            )
        grid.caption = f"run {self.run_status.lower()}"
        return grid


async def follow_run(events: AsyncIterator[WorkflowEvent], board: RunBoard, title: str) -> None:
    """Show `events` until the stream ends."""
    err.print(Text(title, style="bold"))
    if not err.is_terminal:
        async for event in events:
            if (line := board.apply(event)) is not None:
                err.print(line)
        return
    live = Live(_BoardView(board), console=err, refresh_per_second=8)
    with live, OUTAGE.shown(), _cleared_if_interrupted(live):
        async for event in events:
            board.apply(event)
            live.refresh()


class _BoardView:
    """The board's table as it is at each refresh, and the outage line."""

    def __init__(self, board: RunBoard) -> None:
        self._board = board

    def __rich__(self) -> RenderableType:
        line = OUTAGE.status()
        table = self._board.table()
        return table if line is None else Group(table, line)
