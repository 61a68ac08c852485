"""Schedules fire: a loop on every replica, no scheduler process of its own.

Unlike the other background loops (DESIGN §7: one replica at a time, under
an advisory lock), this one runs on every replica at once by design: row
locks make each fire exactly-once, and replicas share the due schedules
instead of one replica firing them all while the others idle.

Each round reads which schedules are due (without locks), then takes each
due one in a transaction of its own that locks its row (PostgreSQL: SKIP
LOCKED, so replicas share the work instead of waiting on each other) and
reads it afresh: a time another replica fired meanwhile has moved
`next_fire_at` on and is no longer due. In that transaction the fire's task
is created queued, or its workflow run started, with the schedule and the
time it is for (Origin), the time is recorded in schedule_fires, and the
schedule moves on. So each scheduled time starts one task or run,
whichever replica gets to it, and nothing fires that does not commit with
the schedule's new position. Every path that fires (this loop,
TriggerSchedule, BackfillSchedule) holds the schedule's lock and leaves out
times recorded as fired; the primary key of schedule_fires stands behind
this, and outlives the tasks and runs that retention removes.

One transaction per schedule: a schedule whose fire fails (a bug, an
outage) holds up only itself, and the next round tries it again. A round
sleeps until the earliest due time it saw or set (at most TICK_SECONDS),
so a loop that falls behind by a round's length catches up at once.
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
from orchestrator.engine.schedule_times import Round, plan_round
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
# Schedules read per page of a round.
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
        """One round; the seconds until the next one is needed."""
        now = utcnow()
        soonest = now + timedelta(seconds=TICK_SECONDS)
        async with self._db.read() as conn:
            buffered = await schedule_store.buffered_ready(conn, BATCH)
        for schedule_id in buffered:
            soonest = _earlier(soonest, await self._fire(schedule_id))
        if len(buffered) == BATCH:
            soonest = now  # more are waiting
        after: tuple[datetime, str] | None = None
        while True:
            async with self._db.read() as conn:
                page = await schedule_store.candidates(
                    conn, now + timedelta(seconds=TICK_SECONDS), after, BATCH
                )
            for candidate in page:
                if candidate.due_at <= now:
                    soonest = _earlier(soonest, await self._fire(candidate.id))
                else:
                    soonest = _earlier(soonest, candidate.due_at)
            if len(page) < BATCH:
                return max(0.0, (soonest - utcnow()).total_seconds())
            after = (page[-1].due_at, page[-1].id)

    async def _fire(self, schedule_id: str) -> datetime | None:
        """Fire what is due of the schedule; when it is due next (None if
        not known: held elsewhere, failed, or nothing more to fire)."""

        async def advance(changes: Changes) -> datetime | None:
            return await self._advance(changes, schedule_id)

        with survived(f"fire of schedule {schedule_id}"):
            return await self._journal.transact(advance)
        return None

    async def _advance(self, changes: Changes, schedule_id: str) -> datetime | None:
        """Fire what is due of one schedule, if no one else holds it."""
        schedule = await schedule_store.lock_due(changes.conn, schedule_id)
        if schedule is None:
            return None
        conn = changes.conn
        previous = Previous(schedule.last_task_id, schedule.last_run_id, schedule.last_fired_at)
        running = await schedule_store.unfinished(conn, previous.task_id, previous.run_id)
        buffered = schedule.buffered_at
        overlap = schedule.spec.overlap
        try:
            if buffered is not None and not running:
                running = await self._fire_unless_fired(changes, schedule, buffered, previous)
                buffered = None
            plan = plan_round(schedule, changes.now)
            times = plan.fire
            if overlap in (Overlap.SKIP, Overlap.CANCEL_OTHER):
                # A catch-up's earlier times would be skipped or cancelled
                # by the next at once: only the latest starts.
                times = times[-1:]
            already = await schedule_store.fired_times(conn, schedule.id, times)
            for time in times:
                if time in already:
                    continue
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
            return None
        if previous.fired_at != schedule.last_fired_at:
            log.debug(
                "schedule fired",
                extra={"schedule_id": schedule.id, "scheduled_at": previous.fired_at},
            )
        state = {
            "next_fire_at": plan.next_fire_at,
            "due_at": plan.due_at,
            "buffered_at": buffered,
            "last_fired_at": previous.fired_at,
            "last_task_id": previous.task_id,
            "last_run_id": previous.run_id,
        }
        if state != _state_of(schedule, plan):
            await schedule_store.set_state(conn, schedule.id, **state)
        return plan.due_at

    async def _fire_unless_fired(
        self, changes: Changes, schedule: Schedule, time: datetime, previous: Previous
    ) -> bool:
        """Whether it started the fire (not if `time` was fired already)."""
        if await schedule_store.fired_times(changes.conn, schedule.id, [time]):
            return False
        previous.took(await self.start(changes, schedule, time))
        return True

    async def start(self, changes: Changes, schedule: Schedule, time: datetime) -> ScheduleFire:
        """The fire for `time`: its task created queued, or its workflow run
        started, and the time recorded as fired, in the caller's
        transaction. WorkflowGone if the workflow was deleted."""
        fire = await self._start(changes, schedule, time)
        await schedule_store.record_fire(changes.conn, schedule.id, time)
        return fire

    async def _start(self, changes: Changes, schedule: Schedule, time: datetime) -> ScheduleFire:
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
        due_at=None,
        buffered_at=None,
        updated_at=changes.now,
    )


def _earlier(soonest: datetime, due: datetime | None) -> datetime:
    return soonest if due is None else min(soonest, due)


def _state_of(schedule: Schedule, plan: Round) -> dict[str, object]:
    """The schedule's stored state, in set_state's terms (its due_at is
    taken as the plan's when its next time stays)."""
    unchanged_due = plan.due_at if plan.next_fire_at == schedule.next_fire_at else None
    return {
        "next_fire_at": schedule.next_fire_at,
        "due_at": unchanged_due,
        "buffered_at": schedule.buffered_at,
        "last_fired_at": schedule.last_fired_at,
        "last_task_id": schedule.last_task_id,
        "last_run_id": schedule.last_run_id,
    }
