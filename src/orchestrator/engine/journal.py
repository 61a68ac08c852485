"""A write transaction over tasks that records their events as it goes.

Events are appended in the same transaction as the change they describe and
published to live followers only after the commit, so a follower never sees
an event that could still roll back.

`transact(body)` runs a transaction again, from the start and in a fresh
`Changes`, when it lost a race with another (a deadlock, a serialization
failure: ABORTED from the store), a bounded number of times;
`transact_patiently(body)` keeps trying through outages too. The body must
keep every effect in its `Changes` (events, after-commit callbacks) or in
what it returns, so a try that rolled back leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.changes import ChangeFeed
from orchestrator.engine.events import E, EventHub
from orchestrator.engine.retry import CONFLICT, CONFLICT_TRIES, OUTAGE
from orchestrator.engine.run_state import RunState
from orchestrator.errors import Aborted, Unavailable
from orchestrator.model import (
    JsonObject,
    Task,
    TaskEvent,
    TaskEventType,
    TaskStatus,
    WorkflowEvent,
)
from orchestrator.store import Database
from orchestrator.store import events as event_store
from orchestrator.store import runs as run_store
from orchestrator.store.notify import notify
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")


class Changes:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.now = utcnow()
        self.events: list[TaskEvent] = []
        # Events of tasks that run workflow nodes, for the run driver, and how
        # many of them it has dealt with.
        self.node_events: list[tuple[Task, TaskEvent]] = []
        self.node_events_settled = 0
        self.run_events: list[WorkflowEvent] = []
        # Runs this transaction has loaded, locked and may change.
        self.runs: dict[str, RunState] = {}
        # Work that must only happen once the change is committed, and what
        # undoes this transaction's marks in memory if it is not.
        self.after_commit: list[Callable[[], None]] = []
        self.after_rollback: list[Callable[[], None]] = []
        # Types of the tasks this transaction queued.
        self.queued_types: set[str] = set()
        # When tasks it queued for later (not_before, a retry's backoff)
        # may first be claimed: the dispatcher wakes then.
        self.queued_for: set[datetime] = set()
        # The type of each task it recorded an event for (events do not carry it).
        self.task_types: dict[str, str] = {}

    def record(
        self,
        task: Task,
        type: TaskEventType,
        message: str = "",
        output: JsonObject | None = None,
    ) -> TaskEvent:
        """The event for a change just made to `task` (which carries the
        bumped sequence number)."""
        event = TaskEvent(
            task_id=task.id,
            sequence=task.last_sequence,
            type=type,
            status=task.status,
            created_at=self.now,
            attempt=task.attempt,
            progress=task.progress,
            message=message,
            output=output,
            worker_id=task.worker_id,
        )
        self.events.append(event)
        self.task_types[task.id] = task.type
        if task.status is TaskStatus.QUEUED:
            self.queued_types.add(task.type)
            if task.available_at is not None and task.available_at > self.now:
                self.queued_for.add(task.available_at)
        if task.workflow_run_id:
            self.node_events.append((task, event))
        return event


class Settle(Protocol):
    async def __call__(self, changes: Changes) -> None: ...


class JournalWatch(Protocol):
    """Told how each transaction went (metrics): committed, after its events
    are published, or failed with a database error."""

    def committed(self, changes: Changes, seconds: float) -> None: ...

    def failed(self, error: Unavailable | Aborted) -> None: ...

    def batched(self, size: int) -> None:
        """A group commit wrote `size` requests in one transaction."""


class _Unwatched:
    def committed(self, changes: Changes, seconds: float) -> None:
        pass

    def failed(self, error: Unavailable | Aborted) -> None:
        pass

    def batched(self, size: int) -> None:
        pass


class Journal:
    def __init__(
        self,
        database: Database,
        task_hub: EventHub[TaskEvent],
        run_hub: EventHub[WorkflowEvent],
        feed: ChangeFeed,
    ) -> None:
        self.database = database
        self.task_hub = task_hub
        self.run_hub = run_hub
        self.feed = feed
        # Set by the engine: lets workflow runs react to their tasks' events
        # inside the same transaction (the checkpoint).
        self.settle: Settle | None = None
        # Set by the engine: hands tasks a transaction queued to idle
        # workers in that same transaction.
        self.dispatch: Settle | None = None
        # On PostgreSQL: tell the other replicas (this one's name).
        self.notify_as: str | None = None
        self.watch: JournalWatch = _Unwatched()

    async def settle_now(self, changes: Changes) -> None:
        """Let workflow runs react to what the transaction did so far (their
        children queued, say), before it goes on."""
        if self.settle is not None:
            await self.settle(changes)

    async def transact(self, body: Callable[[Changes], Awaitable[T]]) -> T:
        """What `body` returns, once its transaction has committed; run again
        after a conflict, up to CONFLICT_TRIES times in all (then Aborted)."""
        tries = 1
        while True:
            try:
                return await _to_the_end(self._once(body))
            except Aborted as conflict:
                if tries >= CONFLICT_TRIES:
                    raise
                cause = str(conflict.__cause__ or conflict).splitlines()[0]
                log.info("transaction conflicted, running it again: %s", cause)
                await asyncio.sleep(CONFLICT.delay(tries))
                tries += 1

    async def _once(self, body: Callable[[Changes], Awaitable[T]]) -> T:
        async with self.change() as changes:
            return await body(changes)

    async def transact_patiently(self, body: Callable[[Changes], Awaitable[T]], what: str) -> T:
        """`transact`, tried again and again until it goes through, for work
        that must not be dropped: through conflicts that outlast its tries and
        through a database outage. Ends only by going through or by being
        cancelled."""
        failures = 0
        while True:
            try:
                return await self.transact(body)
            except (Unavailable, Aborted) as failure:
                failures += 1
                log.warning("%s not written yet, trying again: %s", what, failure.message)
            await asyncio.sleep(OUTAGE.delay(failures))

    @contextlib.asynccontextmanager
    async def change(self) -> AsyncIterator[Changes]:
        changes: Changes | None = None
        began = time.perf_counter()
        try:
            async with self.database.write() as conn:
                changes = Changes(conn)
                yield changes
                await self._finish(changes)
        except BaseException as error:
            for undo in changes.after_rollback if changes is not None else ():
                undo()
            if isinstance(error, Unavailable | Aborted):
                self.watch.failed(error)
            raise
        seconds = time.perf_counter() - began
        _publish(self.task_hub, changes.events, lambda e: e.task_id)
        _publish(self.run_hub, changes.run_events, lambda e: e.run_id)
        if changes.events or changes.run_events:
            # Generators: the keys are only walked while a page watches keys.
            self.feed.changed(
                itertools.chain(
                    (e.task_id for e in changes.events), (e.run_id for e in changes.run_events)
                )
            )
        for callback in changes.after_commit:
            callback()
        self.watch.committed(changes, seconds)

    async def _finish(self, changes: Changes) -> None:
        """What every transaction does last: runs react to their tasks,
        tasks it queued go to idle workers (their start commits with it),
        events are appended, other replicas are told."""
        conn = changes.conn
        await self.settle_now(changes)
        if self.dispatch is not None and changes.queued_types:
            await self.dispatch(changes)
            # Node tasks just started: their runs say so too.
            await self.settle_now(changes)
        await event_store.append(conn, changes.events)
        await run_store.append(conn, changes.run_events)
        if self.notify_as is not None and (changes.events or changes.run_events):
            await notify(
                conn,
                self.notify_as,
                queued=bool(changes.queued_types),
                keys=[e.task_id for e in changes.events] + [e.run_id for e in changes.run_events],
            )


async def _to_the_end(transaction: Coroutine[Any, Any, T]) -> T:
    """The transaction's outcome. A caller that goes away (a client hanging
    up) does not cut it short: cancelled while committing, it could not know
    whether it committed, and what it promised to do after (publish events,
    hand out what it claimed) would be lost."""
    task = asyncio.ensure_future(transaction)
    task.add_done_callback(_outcome_taken)
    return await asyncio.shield(task)


def _outcome_taken(task: asyncio.Future[Any]) -> None:
    # Marked as seen: a caller that stayed gets the outcome and reports it;
    # one that left wants none ("exception was never retrieved" otherwise).
    if not task.cancelled():
        task.exception()


def _publish(hub: EventHub[E], events: list[E], key: Callable[[E], str]) -> None:
    grouped: defaultdict[str, list[E]] = defaultdict(list)
    for event in events:
        grouped[key(event)].append(event)
    for name, batch in grouped.items():
        hub.publish(name, batch)
