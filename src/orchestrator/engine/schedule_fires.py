"""Schedules fire: a loop on every replica, no scheduler process of its own.

Each round reads which schedules are due (without locks), then takes each
due one in a transaction of its own that locks its row (PostgreSQL: SKIP
LOCKED, so replicas share the work instead of waiting on each other) and
reads it afresh: a time another replica fired meanwhile has moved
`next_fire_at` on and is no longer due. In that transaction the fire's task
is created queued, or its workflow run started, with the schedule and the
time it is for (Origin), and the schedule moves on. So each scheduled time
starts one task or run, whichever replica gets to it, and nothing fires
that does not commit with the schedule's new position. The unique index on
(schedule_id, scheduled_at) stands behind this; every path that fires
(this loop, TriggerSchedule, BackfillSchedule) holds the schedule's lock
and leaves out times already fired, so it is never met.

One transaction per schedule: a schedule whose fire fails (a bug, an
outage) holds up only itself, and the next round tries it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.engine.background import survived
from orchestrator.engine.cancellation import cancel_task
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.runs import RunDriver
from orchestrator.engine.schedule_times import due_at, plan_round
from orchestrator.engine.tasks import TaskEngine
from orchestrator.errors import NotFound
from orchestrator.model import Origin, Overlap, RunStatus, Schedule, ScheduleFire, Task
from orchestrator.store import runs as run_store
from orchestrator.store import schedules as schedule_store
from orchestrator.store import tasks as task_store
from orchestrator.store import workflows as workflow_store
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

# The longest a round waits: how soon a schedule created or resumed on
# another replica (or a buffered fire whose previous one ended) is seen.
TICK_SECONDS = 1.0
# Schedules read per round; a full batch makes the next round come at once.
BATCH = 200


class WorkflowGone(Exception):
    """The schedule's workflow was deleted."""


class Fires:
    def __init__(
        self,
        journal: Journal,
        tasks: TaskEngine,
        driver: RunDriver,
        *,
        on_cancelled: Callable[[Task, str], None],
    ) -> None:
        self._journal = journal
        self._db = journal.database
        self._tasks = tasks
        self._driver = driver
        self._on_cancelled = on_cancelled
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """A schedule may be due sooner than the loop thought (created or
        resumed on this replica)."""
        self._woken.set()

    async def run(self) -> None:
        """Fire due schedules, round after round, until cancelled."""
        while True:
            # Cleared first: a wake during the round brings the next at once.
            self._woken.clear()
            wait = TICK_SECONDS
            with survived("schedule fires"):
                wait = await self.fire_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), wait)

    async def fire_due(self) -> float:
        """One round; the seconds until the next one is needed. Candidates
        come in pages; one that a fire moves to another page meanwhile is
        met again next round."""
        now = utcnow()
        wait = TICK_SECONDS
        offset = 0
        while True:
            async with self._db.read() as conn:
                page = await schedule_store.candidates(
                    conn, now + timedelta(seconds=TICK_SECONDS), BATCH, offset
                )
            for candidate in page:
                due = (
                    due_at(candidate.id, candidate.next_fire_at, candidate.jitter_seconds)
                    if candidate.next_fire_at is not None
                    else None
                )
                if candidate.buffered or (due is not None and due <= now):
                    await self._fire(candidate.id)
                elif due is not None:
                    wait = min(wait, (due - now).total_seconds())
            if len(page) < BATCH:
                return wait
            offset += BATCH

    async def _fire(self, schedule_id: str) -> None:
        async def advance(changes: Changes) -> None:
            await self._advance(changes, schedule_id)

        with survived(f"fire of schedule {schedule_id}"):
            await self._journal.transact(advance)

    async def _advance(self, changes: Changes, schedule_id: str) -> None:
        """Fire what is due of one schedule, if no one else holds it."""
        locked = await schedule_store.lock_due(changes.conn, [schedule_id])
        if not locked:
            return
        (schedule,) = locked
        conn = changes.conn
        previous = Previous(schedule.last_task_id, schedule.last_run_id, schedule.last_fired_at)
        running = await schedule_store.unfinished(conn, previous.task_id, previous.run_id)
        buffered = schedule.buffered_at
        try:
            if buffered is not None and not running:
                await self._fire_unless_fired(changes, schedule, buffered, previous)
                running, buffered = True, None
            plan = plan_round(schedule, changes.now)
            already = await schedule_store.fired_times(conn, schedule.id, plan.fire)
            for time in plan.fire:
                if time in already:
                    continue
                overlap = schedule.spec.overlap
                if running and overlap is Overlap.SKIP:
                    continue
                if running and overlap is Overlap.BUFFER_ONE:
                    buffered = buffered or time
                    continue
                if running and overlap is Overlap.CANCEL_OTHER:
                    await self._cancel(changes, schedule, previous, time)
                previous.took(await self.start(changes, schedule, time))
                running = True
        except WorkflowGone:
            await pause_for_gone_workflow(changes, schedule)
            return
        if previous.fired_at != schedule.last_fired_at:
            log.debug(
                "schedule fired",
                extra={"schedule_id": schedule.id, "scheduled_at": previous.fired_at},
            )
        await schedule_store.set_state(
            conn,
            schedule.id,
            next_fire_at=plan.next_fire_at,
            buffered_at=buffered,
            last_fired_at=previous.fired_at,
            last_task_id=previous.task_id,
            last_run_id=previous.run_id,
        )

    async def _fire_unless_fired(
        self, changes: Changes, schedule: Schedule, time: datetime, previous: Previous
    ) -> None:
        if not await schedule_store.fired_times(changes.conn, schedule.id, [time]):
            previous.took(await self.start(changes, schedule, time))

    async def start(self, changes: Changes, schedule: Schedule, time: datetime) -> ScheduleFire:
        """The fire for `time`: its task created queued, or its workflow run
        started, in the caller's transaction. WorkflowGone if the workflow
        was deleted."""
        origin = Origin(schedule.id, time)
        spec = schedule.spec
        if spec.task is not None:
            row = task_store.NewRow(schedule.owner_id, spec.task, origin=origin)
            task = await self._tasks.create_in(changes, row)
            return ScheduleFire(time, task_id=task.id)
        assert spec.workflow_id is not None
        workflow = await workflow_store.get(changes.conn, spec.workflow_id, None)
        if workflow is None:
            raise WorkflowGone(spec.workflow_id)
        run_id = str(uuid.uuid4())
        try:
            await self._driver.start(
                changes, run_id, workflow, schedule.owner_id, spec.input, origin=origin
            )
        except NotFound:  # deleted between the read and the insert
            raise WorkflowGone(spec.workflow_id) from None
        return ScheduleFire(time, run_id=run_id)

    async def _cancel(
        self, changes: Changes, schedule: Schedule, previous: Previous, time: datetime
    ) -> None:
        reason = (
            f"cancelled by schedule {schedule.spec.name!r}: its fire for "
            f"{time.isoformat()} replaces this one"
        )
        if previous.task_id is not None:
            await cancel_task(changes, previous.task_id, reason, self._on_cancelled)
        if previous.run_id is not None:
            # Tasks before their run: the lock order of engine/runs.py.
            await run_store.lock_tasks(changes.conn, previous.run_id)
            state = await self._driver.state(changes, previous.run_id)
            if state is not None and state.running:
                await self._driver.stop(changes, state, RunStatus.CANCELLED, reason)


@dataclass
class Previous:
    """The last fire of a schedule, as a round moves it on."""

    task_id: str | None
    run_id: str | None
    fired_at: datetime | None

    def took(self, fire: ScheduleFire) -> None:
        self.task_id, self.run_id, self.fired_at = fire.task_id, fire.run_id, fire.scheduled_at


async def pause_for_gone_workflow(changes: Changes, schedule: Schedule) -> None:
    note = f"paused: its workflow {schedule.spec.workflow_id} was deleted"
    log.warning(
        "schedule paused: its workflow was deleted",
        extra={"schedule_id": schedule.id, "workflow_id": schedule.spec.workflow_id},
    )
    await schedule_store.set_state(
        changes.conn,
        schedule.id,
        paused=True,
        note=note,
        next_fire_at=None,
        buffered_at=None,
        updated_at=changes.now,
    )
