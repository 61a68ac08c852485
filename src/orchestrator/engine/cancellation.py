"""Cancelling a task: one rule, whoever asks (a user, or a run that ends)."""

from __future__ import annotations

from collections.abc import Callable, Collection

from orchestrator.engine.journal import Changes
from orchestrator.model import Task, TaskEventType, TaskStatus
from orchestrator.store import tasks as task_store

UNFINISHED = frozenset({TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING})


async def cancel_task(
    changes: Changes,
    task_id: str,
    reason: str,
    tell_worker: Callable[[Task, str], None],
    statuses: Collection[TaskStatus] = UNFINISHED,
) -> Task | None:
    """The cancelled task, or None if it had already finished (or was in
    none of `statuses`). A worker that holds it is told once the change is
    committed."""
    cancelled = await task_store.change(
        changes.conn,
        task_id,
        {
            "status": TaskStatus.CANCELLED,
            "error": reason,
            "finished_at": changes.now,
            "updated_at": changes.now,
            "lease_expires_at": None,
            "deadline_at": None,
        },
        statuses=statuses,
    )
    if cancelled is None:
        return None
    changes.record(cancelled, TaskEventType.CANCELLED, message=reason)
    if cancelled.worker_id:
        changes.after_commit.append(lambda: tell_worker(cancelled, reason))
    return cancelled
