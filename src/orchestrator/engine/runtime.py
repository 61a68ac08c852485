"""The engine assembled: event hub, dispatcher, task rules, and the
background loops the server starts and stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from orchestrator.config import Settings
from orchestrator.engine.attempts import AttemptRules
from orchestrator.engine.background import survived
from orchestrator.engine.changes import ChangeFeed
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.dispatch import Dispatcher
from orchestrator.engine.events import EventHub
from orchestrator.engine.journal import Journal
from orchestrator.engine.retention import Retention
from orchestrator.engine.retry import Backoff
from orchestrator.engine.runs import RunDriver
from orchestrator.engine.schedule_fires import Fires
from orchestrator.engine.schedules import ScheduleEngine
from orchestrator.engine.tasks import TaskEngine
from orchestrator.engine.workflows import WorkflowEngine
from orchestrator.model import TaskEvent, WorkflowEvent
from orchestrator.store import Database
from orchestrator.store.notify import listen


class Engine:
    def __init__(
        self, database: Database, settings: Settings, credentials: CredentialWatch
    ) -> None:
        self.task_events: EventHub[TaskEvent] = EventHub(settings.stream_buffer_size)
        self.run_events: EventHub[WorkflowEvent] = EventHub(settings.stream_buffer_size)
        self.changes = ChangeFeed()
        journal = Journal(database, self.task_events, self.run_events, self.changes)
        self.journal = journal
        self._listen_dsn = settings.database_url if database.dialect == "postgresql" else None
        self._replica_id = settings.replica_id
        if self._listen_dsn:
            journal.notify_as = settings.replica_id
        self.dispatcher = Dispatcher(
            journal,
            AttemptRules(
                lease_seconds=settings.lease_seconds,
                max_payload_bytes=settings.max_payload_bytes,
                backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
                max_lost_deliveries=settings.max_lost_deliveries,
            ),
            credentials,
        )
        self._credentials = credentials
        self.tasks = TaskEngine(
            database,
            journal,
            max_payload_bytes=settings.max_payload_bytes,
            on_queued=self.dispatcher.wake,
            on_cancelled=self.dispatcher.cancel_assignment,
        )
        driver = RunDriver(
            max_payload_bytes=settings.max_payload_bytes,
            default_max_attempts=settings.default_max_attempts,
            on_queued=self.dispatcher.wake,
            on_cancelled=self.dispatcher.cancel_assignment,
        )
        journal.settle = driver.settle
        journal.dispatch = self.dispatcher.claim_within
        self.workflows = WorkflowEngine(
            database,
            journal,
            self.run_events,
            driver,
            max_payload_bytes=settings.max_payload_bytes,
        )
        self._fires = Fires(
            journal, self.tasks, driver, on_cancelled=self.dispatcher.cancel_assignment
        )
        self.schedules = ScheduleEngine(
            database,
            journal,
            self._fires,
            max_payload_bytes=settings.max_payload_bytes,
            retention_days=settings.retention_days,
        )
        # Leases are checked several times per lease so a lost one is noticed
        # well before a second lease would have run out.
        self._reap_every = min(1.0, settings.lease_seconds / 4)
        self._retention = (
            Retention(database, settings.retention_days) if settings.retention_days else None
        )
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(
                _every(self._reap_every, self.dispatcher.attempts.reap), name="lease-reaper"
            ),
            asyncio.create_task(self.dispatcher.run_rechecks(), name="held-task-checks"),
            asyncio.create_task(self._credentials.run(), name="credential-checks"),
            asyncio.create_task(self._fires.run(), name="schedule-fires"),
        ]
        if self._retention is not None:
            self._loops.append(asyncio.create_task(self._retention.run(), name="retention"))
        if self._listen_dsn:
            self._loops.append(
                asyncio.create_task(
                    listen(
                        self._listen_dsn.replace("postgres://", "postgresql://", 1),
                        self._replica_id,
                        self.dispatcher.wake,
                        self._poke,
                        self._credentials.revoked_elsewhere,
                    ),
                    name="pg-listener",
                )
            )

    def _poke(self, keys: list[str]) -> None:
        self.task_events.poke(keys)
        self.run_events.poke(keys)
        self.changes.changed(keys)
        self.dispatcher.changed_elsewhere(keys)

    async def stop(self) -> None:
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops = []


async def _every(seconds: float, step: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(seconds)
        with survived("background step"):
            await step()
