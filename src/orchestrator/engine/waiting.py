"""Why a queued task has not started: the first of its time, its key, its
bucket, and the workers of this replica that could take it.

Only GetTask asks (a few reads per call); nothing on the dispatch path pays
for it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.engine.dispatch import Dispatcher, WorkerSession
from orchestrator.model import ConcurrencyStrategy, Task, TaskStatus, WaitReason
from orchestrator.store import Database
from orchestrator.store import limits as limit_store
from orchestrator.store.types import utcnow

Waiting = tuple[WaitReason, str]
CANCEL_OLDEST = ConcurrencyStrategy.CANCEL_OLDEST


class WaitReasons:
    def __init__(self, database: Database, dispatcher: Dispatcher) -> None:
        self._db = database
        self._dispatcher = dispatcher
        # Other replicas' workers are not known here: say so.
        self._where = " on this replica" if limit_store.shared(database) else ""

    async def of(self, task: Task) -> Waiting | None:
        """Why `task` waits; None when it is not QUEUED or nothing holds it
        back (a claim is about to take it)."""
        if task.status is not TaskStatus.QUEUED:
            return None
        now = utcnow()
        if task.available_at is not None and task.available_at > now:
            if task.attempt > 0:
                return WaitReason.RETRY_BACKOFF, f"retrying after {_when(task.available_at)}"
            return WaitReason.NOT_BEFORE, f"not before {_when(task.available_at)}"
        if held := await self._held_by_limits(task, now):
            return held
        serving = [s for s in self._dispatcher.sessions if _serves(s, task)]
        if not serving:
            return WaitReason.NO_WORKER, f"no connected worker serves type {task.type}{self._where}"
        if not any(s.free > 0 for s in serving):
            slots = sum(s.slots for s in serving)
            return (
                WaitReason.NO_FREE_SLOT,
                f"all {slots} slots of the workers serving type {task.type}{self._where} are busy",
            )
        return None

    async def _held_by_limits(self, task: Task, now: datetime) -> Waiting | None:
        concurrency, rate = task.concurrency, task.rate_limit
        async with self._db.read() as conn:
            # CANCEL_OLDEST never waits for its key: it makes room.
            if concurrency is not None and concurrency.strategy is not CANCEL_OLDEST:
                running = await limit_store.running_with_key(conn, task.owner_id, concurrency.key)
                if running >= concurrency.limit:
                    return (
                        WaitReason.CONCURRENCY_LIMIT,
                        f"concurrency key {concurrency.key} has {running} of "
                        f"{concurrency.limit} running",
                    )
            if rate is not None:
                next_at = await limit_store.bucket_next_at(conn, task.owner_id, rate.bucket)
                if next_at is not None and next_at > now:
                    return (
                        WaitReason.RATE_LIMIT,
                        f"rate bucket {rate.bucket} next allows a start at {_when(next_at)}",
                    )
        return None


def _serves(session: WorkerSession, task: Task) -> bool:
    return (
        not session.draining
        and task.type in session.task_types
        and session.owner_filter in (None, task.owner_id)
    )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
