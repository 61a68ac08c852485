"""Attempts, as workers drive them: claim, report, finish, and what happens
when a worker or its lease is lost.

Each claim bumps the task's fencing token. Every report carries the token of
its attempt and is applied only while that attempt is current, so a result
arrives in the record once, whoever sends it and however late.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from opentelemetry import trace

from orchestrator import tracing
from orchestrator.engine.cancellation import cancel_task
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.reports import (
    Complete,
    Fail,
    Heartbeat,
    LogLine,
    Progress,
    Release,
    Report,
)
from orchestrator.engine.retry import Backoff
from orchestrator.engine.validation import payload_problem
from orchestrator.errors import FailedPrecondition
from orchestrator.model import Credential, JsonObject, Task, TaskEventType, TaskStatus
from orchestrator.store import credentials as credential_store
from orchestrator.store import tasks as task_store
from orchestrator.store.locks import REAPER_LOCK, try_lock
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

STALE = "attempt {fencing} of task {task_id} is no longer current"
_REAP_BATCH = 200


@dataclass(frozen=True)
class Refill:
    """Work to claim for workers that serve the same types for the same owner
    (None: anyone's) with the same credential: up to `count` tasks for each
    `(worker_id, count)` of `slots`."""

    types: Sequence[str]
    owner_id: str | None
    # Nothing is claimed once it stops working.
    credential: Credential
    slots: Sequence[tuple[str, int]]


@dataclass(frozen=True)
class AttemptRules:
    lease_seconds: float
    max_payload_bytes: int
    backoff: Backoff
    # Deliveries whose worker was lost before a task fails: one that kills
    # its worker (out of memory, a crash) would be handed out for ever.
    max_lost_deliveries: int


class Attempts:
    def __init__(
        self,
        journal: Journal,
        rules: AttemptRules,
        *,
        on_retry_at: Callable[[datetime], None],
        on_cancelled: Callable[[Task, str], None],
    ) -> None:
        self._journal = journal
        self._rules = rules
        self._on_retry_at = on_retry_at
        self._on_cancelled = on_cancelled
        # A claim of this replica left tasks waiting for a full key.
        self._keys_full = False
        # Keyed tasks that stopped running so far: a claim that counted a key
        # full and commits after one of them stopped must wake its workers
        # itself (the stop found no claim that had left tasks for it).
        self._freed = 0

    @property
    def rules(self) -> AttemptRules:
        return self._rules

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._rules.lease_seconds)

    async def claim(self, tx: Changes, refill: Refill) -> list[Task]:
        """Queued tasks, now RUNNING on the refill's workers (each task's
        `worker_id` says whose)."""
        slots = [(worker, count) for worker, count in refill.slots if count > 0]
        if not slots:
            return []
        if not await credential_store.hold(tx.conn, refill.credential, tx.now):
            return []
        freed_before = self._freed
        claim = await task_store.claim(
            tx.conn,
            slots=slots,
            types=refill.types,
            owner_id=refill.owner_id,
            now=tx.now,
            lease_expires_at=self._lease(tx.now),
        )
        if claim.started and claim.started[0].started_at:
            # A claim on a key may start later than the transaction began
            # (store/limits.py): its events say when.
            tx.now = max(tx.now, claim.started[0].started_at)
        for task in claim.started:
            tx.record(task, TaskEventType.STARTED)
        for task, reason in claim.cancel:
            # As read and locked: a queued one for CANCEL_NEWEST, a running
            # one for CANCEL_OLDEST (its worker is told after the commit).
            await cancel_task(tx, task.id, reason, self._on_cancelled, {task.status})
        if claim.wake_at is not None:
            tx.after_commit.append(functools.partial(self._on_retry_at, claim.wake_at))
        if claim.key_full:
            tx.after_commit.append(functools.partial(self._waiting_for_keys, freed_before))
        return claim.started

    def _waiting_for_keys(self, freed_before: int) -> None:
        self._keys_full = True
        if self._freed != freed_before:
            # A slot the claim counted taken may be free by now.
            self._key_freed()

    async def apply(self, tx: Changes, worker_id: str, report: Report) -> None:
        """One worker report, in the caller's transaction. A report about an
        attempt that is no longer current raises FailedPrecondition having
        written nothing (its conditional update matched no row), so the rest
        of the transaction stands."""
        match report:
            case Heartbeat():
                await task_store.extend_leases(tx.conn, worker_id, self._lease(tx.now))
            case Progress(task_id, fencing, percent, message):
                values = {"progress": max(0, min(100, percent)), "progress_message": message}
                task = await self._current(tx, task_id, fencing, values, worker_id)
                tx.record(task, TaskEventType.PROGRESS, message=message)
            case LogLine(task_id, fencing, line):
                task = await self._current(tx, task_id, fencing, {}, worker_id)
                tx.record(task, TaskEventType.LOG, message=line)
            case Complete(task_id, fencing, output):
                await self._complete(tx, worker_id, task_id, fencing, output)
            case Fail(task_id, fencing, error, permanent):
                current = await self._held(tx, worker_id, task_id, fencing)
                await self._fail(tx, current, error or "failed", permanent=permanent)
            case Release(task_id, fencing):
                current = await self._held(tx, worker_id, task_id, fencing)
                # A clean hand-back, not a loss: it does not count.
                await self._give_back(tx, current, "handed back by worker")

    async def _complete(
        self, tx: Changes, worker_id: str, task_id: str, fencing: int, output: JsonObject
    ) -> None:
        if problem := payload_problem(output, self._rules.max_payload_bytes):
            current = await self._held(tx, worker_id, task_id, fencing)
            await self._fail(tx, current, f"output {problem}", permanent=True)
            return
        task = await self._current(
            tx,
            task_id,
            fencing,
            {
                "status": TaskStatus.SUCCEEDED,
                "output": output,
                "error": "",
                "progress": 100,
                "finished_at": tx.now,
                "lease_expires_at": None,
                "deadline_at": None,
            },
            worker_id,
        )
        tx.record(task, TaskEventType.SUCCEEDED, output=output)
        _trace_outcome(tx, task)

    async def _held(self, tx: Changes, worker_id: str, task_id: str, fencing: int) -> Task:
        """The running attempt this worker holds; a report about any other
        (stale, or not this worker's: a forged report) is refused."""
        current = await task_store.get(tx.conn, task_id)
        if (
            current is None
            or current.fencing_token != fencing
            or current.worker_id != worker_id
            or current.status is not TaskStatus.RUNNING
        ):
            raise FailedPrecondition(STALE.format(fencing=fencing, task_id=task_id))
        return current

    async def _fail(
        self,
        tx: Changes,
        current: Task,
        error: str,
        *,
        permanent: bool,
        also: dict[str, object] | None = None,
    ) -> None:
        retry_at = None
        if not permanent and current.attempt < current.max_attempts:
            retry_at = tx.now + timedelta(seconds=self._rules.backoff.delay(current.attempt))
            values = {"status": TaskStatus.QUEUED, "available_at": retry_at, "worker_id": None}
        else:
            values = {"status": TaskStatus.FAILED, "finished_at": tx.now}
        task = await self._current(
            tx,
            current.id,
            current.fencing_token,
            {
                **values,
                **(also or {}),
                "error": error,
                "lease_expires_at": None,
                "deadline_at": None,
            },
        )
        if retry_at is not None:
            # Recorded as queued for retry_at: the dispatcher wakes then, once
            # this commits (Dispatcher.claim_within).
            tx.record(task, TaskEventType.RETRYING, message=error)
        else:
            tx.record(task, TaskEventType.FAILED, message=error)
        _trace_outcome(tx, task, error)

    async def _requeue(self, tx: Changes, current: Task, reason: str) -> None:
        """Give back an attempt whose worker was lost, counting the loss; the
        loss that reaches the limit fails the task instead."""
        lost = current.lost_deliveries + 1
        if lost < self._rules.max_lost_deliveries:
            await self._give_back(tx, current, reason, {"lost_deliveries": lost})
            return
        error = f"its worker was lost {lost} times while running it (last: {reason})"
        await self._fail(tx, current, error, permanent=True, also={"lost_deliveries": lost})
        tx.after_commit.append(
            lambda: log.warning(
                "task failed: its worker was lost %d times",
                lost,
                extra={"task_id": current.id, "reason": reason},
            )
        )

    async def _give_back(
        self, tx: Changes, current: Task, reason: str, also: dict[str, object] | None = None
    ) -> None:
        """Back to the queue; the attempt does not count toward max_attempts."""
        task = await self._current(
            tx,
            current.id,
            current.fencing_token,
            {
                **(also or {}),
                "status": TaskStatus.QUEUED,
                "attempt": max(0, current.attempt - 1),
                "available_at": tx.now,
                "worker_id": None,
                "lease_expires_at": None,
                "deadline_at": None,
            },
        )
        tx.record(task, TaskEventType.REQUEUED, message=reason)

    async def requeue_worker(self, worker_id: str, reason: str, *, lost: bool = True) -> int:
        """Give back what the worker holds. Unless `lost`, the server ended
        the worker's stream (shutdown, a revoked credential) or never sent
        the work: no fault of the tasks, so nothing is counted."""

        async def requeue(tx: Changes) -> int:
            held = await task_store.held_by(tx.conn, worker_id)
            for task in held:
                with contextlib.suppress(FailedPrecondition):  # finished meanwhile
                    if lost:
                        await self._requeue(tx, task, reason)
                    else:
                        await self._give_back(tx, task, reason)
            return len(held)

        return await self._journal.transact(requeue)

    async def reap(self) -> int:
        """Fail attempts past their timeout; re-queue tasks whose lease ran
        out. Returns how many tasks it touched."""

        async def reap(tx: Changes) -> int:
            if not await try_lock(tx.conn, REAPER_LOCK):
                return 0  # another replica is reaping right now
            overdue = await task_store.overdue(tx.conn, tx.now, _REAP_BATCH)
            for task in overdue:
                # Another replica's reaper may have got there first.
                with contextlib.suppress(FailedPrecondition):
                    if task.deadline_at is not None and task.deadline_at < tx.now:
                        error = f"timed out after {task.timeout_seconds}s"
                        await self._fail(tx, task, error, permanent=False)
                        tx.after_commit.append(functools.partial(self._on_cancelled, task, error))
                    else:
                        await self._requeue(tx, task, "lease expired")
            if overdue:
                # Re-queued work should not wait for the dispatcher's next poll.
                tx.after_commit.append(functools.partial(self._on_retry_at, tx.now))
            return len(overdue)

        reaped = await self._journal.transact(reap)
        if reaped:
            log.info("reaped overdue tasks", extra={"count": reaped})
        return reaped

    def _key_freed(self) -> None:
        """A task with a key stopped running: if a claim here left tasks for
        a full key, workers it starved claim anew (the claim that wakes
        says again whether keys are full)."""
        self._freed += 1
        if self._keys_full:
            self._keys_full = False
            self._on_retry_at(utcnow())

    async def _current(
        self,
        tx: Changes,
        task_id: str,
        fencing: int,
        values: dict[str, object],
        worker_id: str | None = None,
    ) -> Task:
        """Change the running attempt `fencing` of the task (held by
        `worker_id`, when given), or refuse."""
        task = await task_store.change(
            tx.conn,
            task_id,
            {**values, "updated_at": tx.now},
            statuses={TaskStatus.RUNNING},
            fencing_token=fencing,
            worker_id=worker_id,
        )
        if task is None:
            raise FailedPrecondition(STALE.format(fencing=fencing, task_id=task_id))
        if task.concurrency is not None and task.status is not TaskStatus.RUNNING:
            tx.after_commit.append(self._key_freed)
        return task


_tracer = trace.get_tracer("orchestrator.server")


def _trace_outcome(tx: Changes, task: Task, error: str = "") -> None:
    """The attempt's end, as the server recorded it, in the task's trace:
    the span after the worker's `run` span, once the transaction commits."""
    if tracing.enabled() and task.trace_context:
        outcome = "retrying" if task.status is TaskStatus.QUEUED else task.status.value.lower()
        attributes = {"orchestrator.task.id": task.id, "orchestrator.task.outcome": outcome}
        tx.after_commit.append(
            functools.partial(
                tracing.record,
                _tracer,
                f"record {outcome} {task.type}",
                task.trace_context,
                tx.now,
                attributes,
                error,
            )
        )
