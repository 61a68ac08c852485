"""Tasks as users see them: create, read, change, execute, cancel, follow."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator import tracing
from orchestrator.auth.identity import Identity
from orchestrator.engine import pages
from orchestrator.engine.batching import GroupCommit
from orchestrator.engine.cancellation import cancel_task
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.validation import check_new_task, field_problems
from orchestrator.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from orchestrator.model import (
    TERMINAL,
    NewTask,
    RunStatus,
    Task,
    TaskEvent,
    TaskEventType,
    TaskStatus,
)
from orchestrator.store import Database
from orchestrator.store import events as event_store
from orchestrator.store import runs as run_store
from orchestrator.store import tasks as task_store

log = logging.getLogger(__name__)

# Tasks in one CreateTasks call.
MAX_BATCH = 1000

# Fields UpdateTask may change, and the states in which each may.
_NOT_RUNNING = frozenset({TaskStatus.PENDING, *TERMINAL})
UPDATABLE: dict[str, frozenset[TaskStatus]] = {
    "title": frozenset(TaskStatus),
    "description": frozenset(TaskStatus),
    "labels": frozenset(TaskStatus),
    "priority": frozenset({TaskStatus.PENDING, TaskStatus.QUEUED, *TERMINAL}),
    "max_attempts": _NOT_RUNNING | {TaskStatus.QUEUED},
    "timeout_seconds": _NOT_RUNNING | {TaskStatus.QUEUED},
    "input": _NOT_RUNNING,
}


@dataclass(frozen=True)
class TaskFilter:
    status: TaskStatus | None = None
    type: str | None = None
    label: tuple[str, str] | None = None
    # Text anywhere in the title, ignoring the case of ASCII letters.
    title_contains: str | None = None


def _available_at(task: Task, now: datetime) -> datetime:
    """When a task queued `now` may first be claimed: its not_before holds
    however it is queued (created started, StartTask, ExecuteTask)."""
    return max(now, task.not_before) if task.not_before is not None else now


class TaskEngine:
    def __init__(
        self,
        database: Database,
        journal: Journal,
        *,
        max_payload_bytes: int,
        on_queued: Callable[[], None],
        on_cancelled: Callable[[Task, str], None],
    ) -> None:
        self._db = database
        self._hub = journal.task_hub
        self._journal = journal
        self._max_payload = max_payload_bytes
        self._on_queued = on_queued
        self._on_cancelled = on_cancelled
        self._creates = GroupCommit(
            self._create_many, on_batch=lambda size: journal.watch.batched(size)
        )
        # One read answers every follower of a task that asks whether its
        # execution's end is the task's last event (thousands may watch it).
        self._ends: dict[tuple[str, int], asyncio.Future[bool]] = {}

    async def create(self, caller: Identity, new: NewTask) -> Task:
        """The new task, or the caller's task with the same idempotency key."""
        check_new_task(new, self._max_payload)
        row = task_store.NewRow(caller.user_id, new, trace_context=tracing.current_traceparent())
        task, _created = await self._creates.submit(row)
        return task

    async def create_many(self, caller: Identity, news: Sequence[NewTask]) -> list[Task]:
        """All of them in one transaction, in order; an invalid one refuses
        the whole batch (its violations named by index), so nothing is half
        written."""
        if not 1 <= len(news) <= MAX_BATCH:
            raise InvalidArgument.field("tasks", f"send 1 to {MAX_BATCH} tasks")
        problems: list[FieldViolation] = []
        for index, new in enumerate(news):
            try:
                check_new_task(new, self._max_payload)
            except InvalidArgument as invalid:
                problems += invalid.under(f"tasks[{index}].").violations
        if problems:
            raise InvalidArgument(violations=problems)
        trace = tracing.current_traceparent()
        rows = [task_store.NewRow(caller.user_id, new, trace_context=trace) for new in news]
        return [task for task, _created in await self._create_many(rows)]

    async def _create_many(self, rows: Sequence[task_store.NewRow]) -> list[tuple[Task, bool]]:
        """One transaction for a batch (a group commit's, or CreateTasks'),
        run again whole if it conflicts: none of its tasks exists until it
        commits."""

        async def insert(changes: Changes) -> list[tuple[Task, bool]]:
            outcomes = await task_store.insert_new(changes.conn, rows, changes.now)
            for task, created in outcomes:
                if created and task.status is TaskStatus.QUEUED:
                    changes.record(task, TaskEventType.QUEUED)
            if changes.events:
                changes.after_commit.append(self._on_queued)
            # A pending task has no event yet; pages of lists still show it.
            pending = [t.id for t, new in outcomes if new and t.status is TaskStatus.PENDING]
            if pending:
                changes.after_commit.append(lambda: self._journal.feed.changed(pending))
            return outcomes

        return await self._journal.transact(insert)

    async def create_in(self, tx: Changes, row: task_store.NewRow) -> Task:
        """A task created and queued within the caller's transaction (a
        schedule's fire), already checked by the caller."""
        (task,) = await task_store.insert_many(tx.conn, [row], tx.now)
        if task.status is TaskStatus.QUEUED:
            tx.record(task, TaskEventType.QUEUED)
            tx.after_commit.append(self._on_queued)
        return task

    async def get(self, caller: Identity, task_id: str) -> Task:
        async with self._db.read() as conn:
            task = await task_store.get(conn, task_id)
        if task is None or not (caller.is_admin or task.owner_id == caller.user_id):
            # The same answer whether it does not exist or is someone else's.
            raise NotFound(f"task {task_id} not found")
        return task

    async def history(
        self,
        caller: Identity,
        task_id: str,
        limit: int = 500,
        types: Collection[TaskEventType] | None = None,
    ) -> list[TaskEvent]:
        """The task's last `limit` events, in sequence order; of `types` only
        when given (None: every type), so its few timeline events are not
        pushed out of the read by thousands of log lines."""
        if limit < 1:
            raise InvalidArgument.field("limit", "must be positive")
        if types is not None and not types:
            raise InvalidArgument.field("types", "must name at least one event type")
        await self.get(caller, task_id)
        async with self._db.read() as conn:
            return await event_store.latest(conn, task_id, limit, types)

    async def list(
        self, caller: Identity, where: TaskFilter, page_size: int, page_token: str
    ) -> tuple[list[Task], str]:
        limit = pages.page_size(page_size)
        if "\x00" in (where.title_contains or ""):
            # PostgreSQL refuses NUL in any text: refused on both, the
            # answer is the same whichever database holds the tasks.
            raise InvalidArgument.field("title_contains", "must not contain NUL")
        async with self._db.read() as conn:
            found = await task_store.page(
                conn,
                owner_id=None if caller.is_admin else caller.user_id,
                status=where.status,
                type=where.type,
                label=where.label,
                title_contains=where.title_contains,
                after=pages.decode(page_token),
                limit=limit + 1,
            )
        return pages.cut(found, limit)

    async def update(self, caller: Identity, task_id: str, changes: dict[str, Any]) -> Task:
        unknown = sorted(set(changes) - set(UPDATABLE))
        if unknown:
            raise InvalidArgument(
                violations=[
                    FieldViolation(f"update_mask.{p}", "cannot be changed") for p in unknown
                ]
            )
        if not changes:
            raise InvalidArgument.field("update_mask", "names no field to change")
        field_problems(changes, self._max_payload, prefix="task.")
        task = await self.get(caller, task_id)
        await self._check_not_run_owned(task, "updated")
        allowed = set(TaskStatus)
        for field in changes:
            allowed &= UPDATABLE[field]

        async def update(tx: Changes) -> Task:
            updated = await task_store.change(
                tx.conn, task_id, {**changes, "updated_at": tx.now}, statuses=allowed
            )
            if updated is None:
                raise FailedPrecondition(
                    f"{', '.join(sorted(changes))} cannot be changed while the task is "
                    f"{task.status.value}"
                )
            tx.record(updated, TaskEventType.UPDATED, message=", ".join(sorted(changes)))
            return updated

        return await self._journal.transact(update)

    async def delete(self, caller: Identity, task_id: str) -> None:
        await self._check_not_run_owned(await self.get(caller, task_id), "deleted")
        async with self._db.write() as conn:
            deleted = await task_store.remove(
                conn, task_id, statuses=set(TaskStatus) - {TaskStatus.RUNNING}
            )
        if not deleted:
            raise FailedPrecondition(f"task {task_id} is running: cancel it first")
        self._journal.feed.changed([task_id])

    async def cancel(self, caller: Identity, task_id: str, reason: str) -> Task:
        task = await self.get(caller, task_id)
        reason = reason or "cancelled by user"

        async def cancel(tx: Changes) -> Task | None:
            return await cancel_task(tx, task_id, reason, self._on_cancelled)

        cancelled = await self._journal.transact(cancel)
        if cancelled is None:
            raise FailedPrecondition(f"task {task_id} is already {task.status.value}")
        return cancelled

    async def start(self, caller: Identity, task_id: str) -> Task:
        """Queue a PENDING task; one queued or running already is answered as
        it is (a retried call changes nothing)."""
        task = await self.get(caller, task_id)
        if task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            return task

        async def queue(tx: Changes) -> Task | None:
            queued = await task_store.change(
                tx.conn,
                task_id,
                {
                    "status": TaskStatus.QUEUED,
                    "queued_at": tx.now,
                    "available_at": _available_at(task, tx.now),
                    "updated_at": tx.now,
                },
                statuses={TaskStatus.PENDING},
            )
            if queued is not None:
                tx.record(queued, TaskEventType.QUEUED)
                tx.after_commit.append(self._on_queued)
            return queued

        queued = await self._journal.transact(queue)
        if queued is not None:
            return queued
        now = await self.get(caller, task_id)
        if now.status.terminal:
            raise FailedPrecondition(
                f"task {task_id} is already {now.status.value}: ExecuteTask runs it again"
            )
        return now

    async def execute(self, caller: Identity, task_id: str) -> int:
        """Queue the task unless it is queued or running already; the sequence
        number after which its current execution's events start."""
        task = await self.get(caller, task_id)
        if task.status in (TaskStatus.QUEUED, TaskStatus.RUNNING):
            return await self._execution_start(task_id)
        await self._check_not_run_owned(task, "executed again")

        async def queue(tx: Changes) -> Task | None:
            queued = await task_store.change(
                tx.conn,
                task_id,
                {
                    "status": TaskStatus.QUEUED,
                    "attempt": 0,
                    "lost_deliveries": 0,
                    "output": None,
                    "error": "",
                    "queued_at": tx.now,
                    "available_at": _available_at(task, tx.now),
                    "started_at": None,
                    "finished_at": None,
                    "updated_at": tx.now,
                    "progress": 0,
                    "progress_message": "",
                    "worker_id": None,
                },
                statuses={TaskStatus.PENDING, *TERMINAL},
            )
            if queued is not None:
                tx.record(queued, TaskEventType.QUEUED)
            return queued

        queued = await self._journal.transact(queue)
        if queued is None:
            # Someone else queued it meanwhile: follow that execution.
            return await self._execution_start(task_id)
        self._on_queued()
        return queued.last_sequence - 1

    async def _check_not_run_owned(self, task: Task, done: str) -> None:
        """A running workflow run waits on its node's task, so only the run
        may change it. Checked before the change, not with it: a run never
        runs again once it has ended, and a task never changes run."""
        if task.workflow_run_id is None:
            return
        async with self._db.read() as conn:
            run = await run_store.get(conn, task.workflow_run_id)
        if run is not None and run.status is RunStatus.RUNNING:
            raise FailedPrecondition(
                f"task {task.id} is node {task.node_id!r} of workflow run {run.id}, which is "
                f"running: it cannot be {done}; cancel the run (CancelWorkflowRun {run.id})"
            )

    async def _execution_start(self, task_id: str) -> int:
        async with self._db.read() as conn:
            found = await event_store.last_of_type(conn, task_id, TaskEventType.QUEUED)
        return max(0, (found or 1) - 1)

    async def follow(
        self, caller: Identity, task_id: str, after_sequence: int, *, one_execution: bool
    ) -> AsyncIterator[TaskEvent]:
        """Events after `after_sequence`, then live ones. With `one_execution`
        the stream ends with the execution it is in; otherwise it ends once
        the task is finished and nothing follows."""
        if after_sequence < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        task = await self.get(caller, task_id)
        if not one_execution and task.status.terminal and task.last_sequence <= after_sequence:
            return

        async def read_log(after: int, limit: int) -> list[TaskEvent]:
            async with self._db.read() as conn:
                events = await event_store.after(conn, task_id, after, limit)
            if not events and after < task.last_sequence:
                # Events known to exist are gone: the task was deleted
                # (DeleteTask, retention) while its log was being replayed.
                raise NotFound(f"task {task_id} not found")
            return events

        async def is_last(event: TaskEvent) -> bool:
            if not event.ends_execution:
                return False
            return one_execution or await self._nothing_after(task_id, event.sequence)

        async for event in self._hub.follow(task_id, after_sequence, read_log, is_last):
            yield event

    async def _nothing_after(self, task_id: str, sequence: int) -> bool:
        """Whether event `sequence` is the task's latest (it may have been
        queued again already, or deleted)."""
        key = (task_id, sequence)
        answer = self._ends.get(key)
        if answer is None:
            answer = asyncio.ensure_future(self._read_nothing_after(task_id, sequence))
            self._ends[key] = answer
            answer.add_done_callback(lambda _: self._ends.pop(key, None))
        return await asyncio.shield(answer)

    async def _read_nothing_after(self, task_id: str, sequence: int) -> bool:
        async with self._db.read() as conn:
            task = await task_store.get(conn, task_id)
        return task is None or task.last_sequence == sequence
