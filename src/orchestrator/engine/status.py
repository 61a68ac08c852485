"""What the server is doing, for `orchestrator status`: this replica, the
replicas sharing its database, its workers, the queues, and why the
longest-waiting tasks have not started (engine/waiting.py says).

Read on demand by an admin; nothing on the dispatch path pays for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from orchestrator import __version__
from orchestrator.auth.identity import Identity
from orchestrator.engine.dispatch import Dispatcher
from orchestrator.engine.waiting import WaitReasons
from orchestrator.model import Task, WaitReason
from orchestrator.store import Database
from orchestrator.store import status as status_store
from orchestrator.store.status import ConnectedReplica, QueueDepth
from orchestrator.store.types import utcnow

DEFAULT_OLDEST = 10
MAX_OLDEST = 100


@dataclass(frozen=True)
class ConnectedWorker:
    """A worker connected to this replica, as status shows it."""

    id: str
    name: str
    owner_id: str
    task_types: tuple[str, ...]
    slots: int
    in_use: int
    connected_at: datetime
    serves_everyone: bool = False
    # The tasks in its hands now.
    task_ids: tuple[str, ...] = ()
    # Shown to a member who does not own it: how busy it is tells of other
    # users' work, so in_use and task_ids are left empty.
    use_hidden: bool = False


@dataclass(frozen=True)
class WaitingTask:
    task: Task
    queued_at: datetime | None
    # None: nothing holds it back (a claim is about to take it).
    reason: WaitReason | None
    waiting: str


@dataclass(frozen=True)
class Status:
    version: str
    uptime_seconds: int
    replica_id: str
    database_dialect: str
    replicas: list[ConnectedReplica]
    # This replica's only: each replica knows its own workers.
    workers: list[ConnectedWorker]
    queues: list[QueueDepth]
    oldest_waiting: list[WaitingTask]
    read_at: datetime


class StatusReader:
    def __init__(self, database: Database, dispatcher: Dispatcher, replica_id: str) -> None:
        self._db = database
        self._dispatcher = dispatcher
        self._waiting = WaitReasons(database, dispatcher)
        self._replica_id = replica_id
        self._started = time.monotonic()

    async def read(self, oldest_limit: int = DEFAULT_OLDEST) -> Status:
        """The status now, explaining the `oldest_limit` longest-waiting
        tasks (callers check the limit: 1 to MAX_OLDEST)."""
        now = utcnow()
        uptime = time.monotonic() - self._started
        async with self._db.read() as conn:
            queues = await status_store.queue_depths(conn, now)
            oldest = await status_store.oldest_queued(conn, oldest_limit)
            replicas = await status_store.connected_replicas(conn)
        if replicas is None:
            replicas = [ConnectedReplica(self._replica_id, now - timedelta(seconds=uptime), 0)]
        return Status(
            version=__version__,
            uptime_seconds=int(uptime),
            replica_id=self._replica_id,
            database_dialect=self._db.dialect,
            replicas=replicas,
            workers=self._workers(),
            queues=queues,
            oldest_waiting=[await self._explained(task, at) for task, at in oldest],
            read_at=now,
        )

    def workers_for(self, caller: Identity) -> list[ConnectedWorker]:
        """The workers that may run the caller's tasks: all for an admin;
        for a member its own and those of admins (they run anyone's), the
        latter without what they are doing."""
        if caller.is_admin:
            return self._workers()
        return [
            worker
            if worker.owner_id == caller.user_id
            else replace(worker, in_use=0, task_ids=(), use_hidden=True)
            for worker in self._workers()
            if worker.serves_everyone or worker.owner_id == caller.user_id
        ]

    def _workers(self) -> list[ConnectedWorker]:
        return [
            ConnectedWorker(
                id=session.id,
                name=session.name,
                owner_id=session.identity.user_id,
                task_types=session.task_types,
                slots=session.slots,
                in_use=len(session.in_flight),
                connected_at=session.connected_at,
                serves_everyone=session.owner_filter is None,
                task_ids=tuple(session.in_flight),
            )
            for session in sorted(self._dispatcher.sessions, key=lambda s: s.connected_at)
        ]

    async def _explained(self, task: Task, queued_at: datetime | None) -> WaitingTask:
        waiting = await self._waiting.of(task)
        reason, text = waiting if waiting is not None else (None, "")
        return WaitingTask(task, queued_at, reason, text)
