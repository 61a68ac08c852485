"""/tasks/{id}: one task, live: its fields, input and output, progress, log
lines, attempts and timeline; and the actions cancel, run again, delete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from orchestrator.engine.task_requests import again
from orchestrator.model import Task, TaskEvent, TaskEventType, TaskStatus
from orchestrator.web.routing import LivePage, action
from orchestrator.web.view import View

# Each render reads the newest of these, the log lines apart from the rest:
# a task that logs thousands of lines keeps its timeline and attempts.
TIMELINE_EVENTS = 200
LOG_LINES = 200
# What the timeline leaves to the progress bar and the log.
TIMELINE = frozenset(TaskEventType) - {TaskEventType.LOG, TaskEventType.PROGRESS}
LOG = frozenset({TaskEventType.LOG})
# The events that end an attempt, with how it ended.
ATTEMPT_ENDS = {
    TaskEventType.SUCCEEDED: "succeeded",
    TaskEventType.FAILED: "failed",
    TaskEventType.RETRYING: "failed",
    TaskEventType.REQUEUED: "requeued",
    TaskEventType.CANCELLED: "cancelled",
}


@dataclass(frozen=True)
class Attempt:
    number: int
    worker_id: str | None
    started_at: datetime
    ended_at: datetime | None = None
    # "running" until an end event says otherwise.
    outcome: str = "running"
    message: str = ""

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


def attempts(events: list[TaskEvent]) -> list[Attempt]:
    """Each start and how it ended, from the task's events, newest first."""
    found: list[Attempt] = []
    for event in events:
        if event.type is TaskEventType.STARTED:
            found.append(Attempt(event.attempt, event.worker_id, event.created_at))
        elif event.type in ATTEMPT_ENDS and found and found[-1].ended_at is None:
            last = found[-1]
            found[-1] = Attempt(
                last.number,
                last.worker_id,
                last.started_at,
                event.created_at,
                ATTEMPT_ENDS[event.type],
                event.message,
            )
    return found[::-1]


def elapsed(task: Task) -> float | None:
    """How long its last attempt ran, once it has ended."""
    if task.started_at is None or task.finished_at is None:
        return None
    return max(0.0, (task.finished_at - task.started_at).total_seconds())


async def _context(view: View) -> dict[str, Any]:
    task_id, tasks = view.param("id"), view.engine.tasks
    task = await tasks.get(view.caller, task_id)
    # One more than shown, to tell whether earlier ones were left out.
    events = await tasks.history(view.caller, task_id, TIMELINE_EVENTS + 1, TIMELINE)
    logs = await tasks.history(view.caller, task_id, LOG_LINES + 1, LOG)
    timeline = events[-TIMELINE_EVENTS:]
    return {
        "task": task,
        "finished": task.status.terminal,
        # A finished task's last report is no longer news; a success is whole.
        "progress": 100 if task.status is TaskStatus.SUCCEEDED else task.progress,
        "waiting": await view.dashboard.waiting.of(task),
        "duration": elapsed(task),
        "logs": logs[-LOG_LINES:],
        "logs_cut": len(logs) > LOG_LINES,
        "timeline": timeline[::-1],
        "timeline_cut": len(events) > TIMELINE_EVENTS,
        "attempts": attempts(timeline),
    }


def _here(view: View) -> str:
    return f"/tasks/{view.param('id')}"


async def _cancel(view: View) -> Response:
    await view.engine.tasks.cancel(view.caller, view.param("id"), "")
    return view.redirect(_here(view), ok="Task cancelled.")


async def _rerun(view: View) -> Response:
    task = await view.engine.tasks.get(view.caller, view.param("id"))
    created = await view.engine.tasks.create(view.caller, again(task))
    return view.redirect(f"/tasks/{created.id}", ok=f"Running again: a new task from {task.id}.")


async def _delete(view: View) -> Response:
    await view.engine.tasks.delete(view.caller, view.param("id"))
    return view.redirect("/tasks", ok=f"Task {view.param('id')} deleted.")


routes = [
    *LivePage(
        "/tasks/{id}", "task.html", _context, key=lambda view: view.param("id"), every=0.25
    ).routes(),
    Route("/tasks/{id}/cancel", action(_cancel, back=_here), methods=["POST"]),
    Route("/tasks/{id}/rerun", action(_rerun, back=_here), methods=["POST"]),
    Route("/tasks/{id}/delete", action(_delete, back=_here), methods=["POST"]),
]
