"""Schedules as users see them: create, read, change, pause, resume,
trigger, backfill, delete. Firing on time is engine/schedule_fires.py.

Every change to a schedule takes its row lock first, so it waits for a fire
in progress and the fire loop, which reads the row afresh under that lock,
sees the change: once PauseSchedule returns, nothing more fires.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from orchestrator.auth.identity import Identity
from orchestrator.engine import pages
from orchestrator.engine.calendar import calendar_problems
from orchestrator.engine.journal import Changes, Journal
from orchestrator.engine.schedule_fires import Fires, WorkflowGone, pause_for_gone_workflow
from orchestrator.engine.schedule_times import MAX_FIRES_PER_ROUND, calendar_of, due_or_none
from orchestrator.engine.validation import MAX_DESCRIPTION, check_new_task, payload_problem
from orchestrator.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from orchestrator.model import Schedule, ScheduleFire, ScheduleSpec
from orchestrator.store import Database
from orchestrator.store import schedules as schedule_store
from orchestrator.store import workflows as workflow_store
from orchestrator.store.types import utcnow

MAX_NAME = 128
MAX_JITTER_SECONDS = 3600
MAX_BACKFILL = 1000
_MICROSECOND = timedelta(microseconds=1)


class ScheduleEngine:
    def __init__(
        self,
        database: Database,
        journal: Journal,
        fires: Fires,
        *,
        max_payload_bytes: int,
        retention_days: float,
    ) -> None:
        self._db = database
        self._journal = journal
        self._fires = fires
        self._max_payload = max_payload_bytes
        # Fires are remembered this long (0: for ever): older times cannot be
        # told fired from not, so no backfill reaches them.
        self._remembered = timedelta(days=retention_days) if retention_days else None

    async def create(
        self,
        caller: Identity,
        spec: ScheduleSpec,
        *,
        paused: bool,
        note: str,
        problems: Sequence[FieldViolation] = (),
    ) -> Schedule:
        """`problems`: found while decoding the spec (its task template's),
        refused with the spec's own."""
        await self._check(spec, caller.user_id, problems)
        _check_note(note)
        now = utcnow()
        schedule = Schedule(
            id=str(uuid.uuid4()),
            owner_id=caller.user_id,
            spec=spec,
            paused=paused,
            note=note,
            created_at=now,
            updated_at=now,
        )
        if not paused:
            schedule = dataclasses.replace(
                schedule, next_fire_at=calendar_of(schedule).next_after(now)
            )
        due = due_or_none(schedule, schedule.next_fire_at)
        async with self._db.write() as conn:
            if not await schedule_store.insert(conn, schedule, due):
                raise AlreadyExists(f"you already have a schedule named {spec.name!r}")
        self._fires.wake()
        return schedule

    async def get(self, caller: Identity, schedule_id: str) -> Schedule:
        async with self._db.read() as conn:
            schedule = await schedule_store.get(conn, schedule_id)
        return _visible(caller, schedule_id, schedule)

    async def list_schedules(
        self, caller: Identity, page_size: int, page_token: str
    ) -> tuple[list[Schedule], str]:
        limit = pages.page_size(page_size)
        async with self._db.read() as conn:
            found = await schedule_store.page(
                conn,
                owner_id=None if caller.is_admin else caller.user_id,
                after=pages.decode(page_token),
                limit=limit + 1,
            )
        return pages.cut(found, limit)

    async def update(
        self,
        caller: Identity,
        schedule_id: str,
        spec: ScheduleSpec,
        problems: Sequence[FieldViolation] = (),
    ) -> Schedule:
        """The new spec; the next times computed anew from now, the history
        kept. A time due but still inside its jitter stays if the new spec
        has it too."""
        current = await self.get(caller, schedule_id)
        await self._check(spec, current.owner_id, problems)
        async with self._db.write() as conn:
            found = await schedule_store.get(conn, schedule_id, lock=True)
            locked = _visible(caller, schedule_id, found)
            now = utcnow()
            changed = dataclasses.replace(locked, spec=spec)
            next_fire_at = None if locked.paused else next_time(changed, locked.next_fire_at, now)
            due = due_or_none(changed, next_fire_at)
            if not await schedule_store.replace_spec(
                conn, schedule_id, spec, next_fire_at, due, now
            ):
                raise AlreadyExists(f"you already have a schedule named {spec.name!r}")
        self._fires.wake()
        return await self.get(caller, schedule_id)

    async def delete(self, caller: Identity, schedule_id: str) -> None:
        async with self._db.write() as conn:
            _visible(caller, schedule_id, await schedule_store.get(conn, schedule_id, lock=True))
            await schedule_store.remove(conn, schedule_id)

    async def pause(self, caller: Identity, schedule_id: str, note: str) -> Schedule:
        _check_note(note)
        async with self._db.write() as conn:
            _visible(caller, schedule_id, await schedule_store.get(conn, schedule_id, lock=True))
            await schedule_store.set_state(
                conn,
                schedule_id,
                paused=True,
                note=note,
                next_fire_at=None,
                due_at=None,
                buffered_at=None,
                updated_at=utcnow(),
            )
        return await self.get(caller, schedule_id)

    async def resume(self, caller: Identity, schedule_id: str, note: str) -> Schedule:
        """Fires again from the next time after now: what was missed while
        paused does not run."""
        _check_note(note)
        async with self._db.write() as conn:
            schedule = _visible(
                caller, schedule_id, await schedule_store.get(conn, schedule_id, lock=True)
            )
            now = utcnow()
            values: dict[str, object] = {"note": note, "updated_at": now}
            if schedule.paused:
                next_fire_at = calendar_of(schedule).next_after(now)
                values.update(
                    paused=False,
                    next_fire_at=next_fire_at,
                    due_at=due_or_none(schedule, next_fire_at),
                )
            await schedule_store.set_state(conn, schedule_id, **values)
        self._fires.wake()
        return await self.get(caller, schedule_id)

    async def trigger(self, caller: Identity, schedule_id: str) -> ScheduleFire:
        """A fire now, whatever the overlap policy (paused or not); it is the
        schedule's last fire from then on."""

        async def trigger(changes: Changes) -> ScheduleFire | None:
            schedule = await self._locked(changes, caller, schedule_id)
            time = changes.now
            while await schedule_store.fired_times(changes.conn, schedule_id, [time]):
                time += timedelta(microseconds=1)  # a time fired in this very microsecond
            fire = await self._start(changes, schedule, time)
            if fire is not None:
                await schedule_store.set_state(
                    changes.conn,
                    schedule_id,
                    last_fired_at=time,
                    last_task_id=fire.task_id,
                    last_run_id=fire.run_id,
                )
            return fire

        fire = await self._journal.transact(trigger)
        if fire is None:
            raise _workflow_gone(schedule_id)
        return fire

    async def backfill(
        self, caller: Identity, schedule_id: str, start_at: datetime | None, end_at: datetime | None
    ) -> list[ScheduleFire]:
        """A fire for each scheduled time in (start_at, end_at] not fired yet,
        whatever the overlap policy; times after now are left to come. The
        schedule's last fire stays as it was. The times are found outside
        any transaction, then fired in transactions of at most
        MAX_FIRES_PER_ROUND, each re-reading under the schedule's lock which
        are fired: a backfill cut short leaves what it fired, and run again
        fires the rest."""
        problems = []
        if start_at is None:
            problems.append(FieldViolation("start_at", "is required"))
        if end_at is None:
            problems.append(FieldViolation("end_at", "is required"))
        elif start_at is not None and end_at <= start_at:
            problems.append(FieldViolation("end_at", "must be after start_at"))
        if self._remembered and start_at is not None and start_at < utcnow() - self._remembered:
            days = self._remembered.total_seconds() / 86400
            problems.append(
                FieldViolation(
                    "start_at",
                    f"is older than the retention age ({days:g} days): "
                    "fires that old are no longer remembered",
                )
            )
        if problems:
            raise InvalidArgument(violations=problems)
        assert start_at is not None and end_at is not None
        fires: list[ScheduleFire] = []
        schedule = await self.get(caller, schedule_id)
        until = min(end_at, utcnow())
        times = calendar_of(schedule).between(start_at, until, MAX_BACKFILL + 1)
        if len(times) > MAX_BACKFILL:
            raise InvalidArgument.field(
                "end_at", f"the range holds more than {MAX_BACKFILL} times: backfill less"
            )
        cursor = start_at
        while times:
            chunk, times = times[:MAX_FIRES_PER_ROUND], times[MAX_FIRES_PER_ROUND:]
            locked, started = await self._journal.transact(
                functools.partial(self._backfill, caller, schedule_id, schedule.spec, chunk)
            )
            if started is None:
                raise _workflow_gone(schedule_id)
            if locked.spec != schedule.spec:  # changed meanwhile: its times found anew
                schedule = locked
                times = calendar_of(schedule).between(cursor, until, MAX_BACKFILL)
                continue
            fires += started
            cursor = chunk[-1]
        return fires

    async def _backfill(
        self,
        caller: Identity,
        schedule_id: str,
        spec: ScheduleSpec,
        times: list[datetime],
        changes: Changes,
    ) -> tuple[Schedule, list[ScheduleFire] | None]:
        """Fires for those of `times` not fired yet, unless the schedule's
        spec is no longer `spec` (then none); None if its workflow is gone."""
        schedule = await self._locked(changes, caller, schedule_id)
        if schedule.spec != spec:
            return schedule, []
        fired = await schedule_store.fired_times(changes.conn, schedule_id, times)
        fires = []
        for time in times:
            if time not in fired:
                fire = await self._start(changes, schedule, time)
                if fire is None:
                    return schedule, None
                fires.append(fire)
        return schedule, fires

    async def _locked(self, changes: Changes, caller: Identity, schedule_id: str) -> Schedule:
        found = await schedule_store.get(changes.conn, schedule_id, lock=True)
        return _visible(caller, schedule_id, found)

    async def _start(
        self, changes: Changes, schedule: Schedule, time: datetime
    ) -> ScheduleFire | None:
        """The fire, or None if the workflow was deleted: then the schedule
        is paused instead (the caller commits that, then says why)."""
        try:
            return await self._fires.start(changes, schedule, time)
        except WorkflowGone:
            await pause_for_gone_workflow(changes, schedule)
            return None

    async def _check(
        self, spec: ScheduleSpec, owner_id: str, given: Sequence[FieldViolation]
    ) -> None:
        """Every problem with a spec at once, as field violations; `given`
        are its task template's, which then is left out of `spec`."""
        problems = list(given)
        problems += [
            FieldViolation(field, text)
            for field, text in _spec_problems(spec, template_given=bool(given))
        ]
        if spec.task is not None:
            try:
                check_new_task(spec.task, self._max_payload)
            except InvalidArgument as invalid:
                problems += [
                    FieldViolation(f"task.{v.field}", v.description) for v in invalid.violations
                ]
            if spec.task.not_before is not None:
                problems.append(
                    FieldViolation("task.not_before", "a schedule's task starts when it fires")
                )
            if spec.task.idempotency_key:
                problems.append(
                    FieldViolation(
                        "task.idempotency_key", "every fire creates a task of its own: leave it out"
                    )
                )
        if spec.workflow_id:
            if problem := payload_problem(spec.input, self._max_payload):
                problems.append(FieldViolation("input", problem))
            async with self._db.read() as conn:
                workflow = await workflow_store.get(conn, spec.workflow_id, None)
            if workflow is None or workflow.owner_id != owner_id:
                problems.append(
                    FieldViolation("workflow_id", "no workflow of the schedule's owner has this id")
                )
        if problems:
            raise InvalidArgument(violations=problems)


def next_time(schedule: Schedule, current: datetime | None, now: datetime) -> datetime | None:
    """The schedule's next time from now on; its current one if that is
    due (perhaps still inside its jitter) and still one of its times."""
    calendar = calendar_of(schedule)
    if current is not None and current <= now:
        if calendar.next_after(current - _MICROSECOND) == current:
            return current
    return calendar.next_after(now)


def _spec_problems(spec: ScheduleSpec, *, template_given: bool) -> list[tuple[str, str]]:
    problems = calendar_problems(
        spec.cron, spec.interval_seconds, spec.time_zone, spec.start_at, spec.end_at
    )
    if not 1 <= len(spec.name) <= MAX_NAME or not spec.name.isprintable():
        problems.append(("name", f"1-{MAX_NAME} printable characters"))
    if spec.task is not None and spec.workflow_id:
        problems.append(("workflow_id", "give a task or a workflow_id, not both"))
    elif spec.task is None and not spec.workflow_id and not template_given:
        problems.append(("task", "give a task to create or a workflow_id to run"))
    if spec.task is not None and spec.input:
        problems.append(("input", "goes with workflow_id; a task takes its input in task.input"))
    if not 0 <= spec.jitter_seconds <= MAX_JITTER_SECONDS:
        problems.append(("jitter_seconds", f"must be in [0, {MAX_JITTER_SECONDS}]"))
    elif spec.interval_seconds > 0 and spec.jitter_seconds >= spec.interval_seconds:
        problems.append(("jitter_seconds", "must be less than interval_seconds"))
    if spec.catchup_window_seconds < 0:
        problems.append(("catchup_window_seconds", "must not be negative"))
    return problems


def _check_note(note: str) -> None:
    if len(note) > MAX_DESCRIPTION:
        raise InvalidArgument.field("note", f"at most {MAX_DESCRIPTION} characters")


def _visible(caller: Identity, schedule_id: str, schedule: Schedule | None) -> Schedule:
    """The schedule if the caller may see it: the same NOT_FOUND whether it
    does not exist or is someone else's."""
    if schedule is None or not (caller.is_admin or schedule.owner_id == caller.user_id):
        raise NotFound(f"schedule {schedule_id} not found")
    return schedule


def _workflow_gone(schedule_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"schedule {schedule_id}'s workflow was deleted: the schedule is paused"
    )
