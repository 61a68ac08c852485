"""/: the overview, live. Tasks by state, tasks finished per minute over the
last hour, the queues and the workers serving them, recent failures and runs,
all scoped like the task service (a member sees its own tasks only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.engine.overview import QueueRow
from orchestrator.engine.status import ConnectedWorker
from orchestrator.model import TaskStatus, WorkflowRun
from orchestrator.store.types import utcnow
from orchestrator.web.charts import bar_chart
from orchestrator.web.pages.runs import workflow_names
from orchestrator.web.routing import LivePage
from orchestrator.web.view import View
from orchestrator.worker.demo import DEMO_TASK_TYPES

RECENT_FAILURES = 8
RECENT_RUNS = 6


@dataclass(frozen=True)
class Queue:
    row: QueueRow
    # Connected workers serving the type, and their free slots: none means
    # its queued tasks wait for one to connect. No count of free slots when
    # an admin's worker serves a member: how busy it is is others' business.
    workers: int
    free_slots: int | None
    demo_type: bool
    # Shown as a time, so the browser keeps "queued 3 min ago" fresh between renders.
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class RecentRun:
    run: WorkflowRun
    # None when the workflow was deleted since.
    workflow_name: str | None


async def _context(view: View) -> dict[str, Any]:
    reader = view.dashboard.overview
    now = utcnow()
    counts = await reader.counts(view.caller)
    workers = view.dashboard.status.workers_for(view.caller)
    queues = [_queue(row, workers, now) for row in await reader.queue(view.caller)]
    runs, _ = await view.engine.workflows.list_runs(view.caller, None, None, RECENT_RUNS, "")
    return {
        "counts": [(status.value, counts[status]) for status in TaskStatus],
        "total": sum(counts.values()),
        "chart": bar_chart(
            await reader.finished_per_minute(view.caller, now),
            label="tasks finished per minute, last hour",
            end=now,
        ),
        "queues": queues,
        "unserved": [q for q in queues if q.row.queued and not q.workers],
        "workers": workers,
        "failures": await reader.recent_failures(view.caller, RECENT_FAILURES),
        "runs": await _named(view, runs),
    }


def _queue(row: QueueRow, workers: list[ConnectedWorker], now: datetime) -> Queue:
    serving = [w for w in workers if row.type in w.task_types]
    waited = row.oldest_waiting_seconds
    return Queue(
        row=row,
        workers=len(serving),
        free_slots=None
        if any(w.use_hidden for w in serving)
        else sum(max(w.slots - w.in_use, 0) for w in serving),
        demo_type=row.type in DEMO_TASK_TYPES,
        oldest_queued_at=None if waited is None else now - timedelta(seconds=waited),
    )


async def _named(view: View, runs: list[WorkflowRun]) -> list[RecentRun]:
    names = await workflow_names(view, {run.workflow_id for run in runs})
    return [RecentRun(run, names[run.workflow_id]) for run in runs]


# Every change may move a count, so any change is worth a render; at most
# one a second keeps a busy server's overview cheap.
routes = LivePage("/", "overview.html", _context, every=1.0).routes()
