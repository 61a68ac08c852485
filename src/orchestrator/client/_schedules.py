"""`client.schedules`: ScheduleService.

    schedule = await client.schedules.create(
        "nightly-report", cron="0 3 * * *", time_zone="Europe/Paris",
        task=TaskSpec("report", {"day": "yesterday"}),
    )
    fire = await client.schedules.trigger(schedule.id)      # once, now

Durations (`interval`, `jitter`, `catchup_window`) are whole seconds or a
timedelta; times are datetimes (a naive one is local time)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator.client import _convert, _convert_schedules
from orchestrator.client._tasks import _create_request
from orchestrator.client._transport import Transport
from orchestrator.client._values import Fire, Page, Schedule, TaskSpec
from orchestrator.client._workflows import Workflows
from orchestrator.errors import InvalidArgument, NotFound
from orchestrator.model import Overlap
from orchestrator.proto import schedules_pb2, tasks_pb2

Duration = float | timedelta
# The proto's durations are int32 seconds.
_MAX_SECONDS = 2**31 - 1


class Schedules:
    def __init__(self, transport: Transport, workflows: Workflows) -> None:
        self._transport = transport
        self._workflows = workflows

    async def create(
        self,
        name: str,
        *,
        cron: str | None = None,
        interval: Duration | None = None,
        time_zone: str = "UTC",
        task: TaskSpec | None = None,
        workflow: str | None = None,
        input: Mapping[str, Any] | None = None,
        overlap: Overlap | str = Overlap.SKIP,
        jitter: Duration = 0,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        catchup_window: Duration = 0,
        paused: bool = False,
        note: str = "",
    ) -> Schedule:
        """A new schedule, `name` unique among the caller's.

        When: `cron` (5 fields, or @hourly, @daily, ...; local times in
        `time_zone`) or `interval` (first fire one interval from now). What:
        `task`, a TaskSpec each fire creates already queued, or `workflow`
        (its id or name) run with `input`. `overlap` says what a fire does
        while the previous one's task or run is unfinished; each fire starts
        up to `jitter` late; none before `start_at` nor after `end_at`;
        after downtime the missed times within `catchup_window` of now fire
        (0: only the latest)."""
        request = await self._request(
            name,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            task=task,
            workflow=workflow,
            input=input,
            overlap=overlap,
            jitter=jitter,
            start_at=start_at,
            end_at=end_at,
            catchup_window=catchup_window,
        )
        request.paused = paused
        request.note = note
        # Not repeated: a create whose reply was lost would come back ALREADY_EXISTS.
        reply = await self._transport.unary(
            lambda s: s.schedules.CreateSchedule, request, idempotent=False
        )
        return _convert_schedules.schedule(reply)

    async def get(self, schedule_id: str) -> Schedule:
        request = schedules_pb2.GetScheduleRequest(id=schedule_id)
        reply = await self._transport.unary(
            lambda s: s.schedules.GetSchedule, request, idempotent=True
        )
        return _convert_schedules.schedule(reply)

    async def list(self, *, page_size: int = 0, page_token: str = "") -> Page[Schedule]:
        """One page of the caller's schedules (an admin's: everyone's)."""
        request = schedules_pb2.ListSchedulesRequest(page_size=page_size, page_token=page_token)
        reply = await self._transport.unary(
            lambda s: s.schedules.ListSchedules, request, idempotent=True
        )
        return Page(
            tuple(_convert_schedules.schedule(m) for m in reply.schedules), reply.next_page_token
        )

    async def list_all(self) -> AsyncIterator[Schedule]:
        """Every schedule the caller may see, page after page."""
        token = ""
        while True:
            page = await self.list(page_size=500, page_token=token)
            for schedule in page.items:
                yield schedule
            token = page.next_page_token
            if not token:
                return

    async def find(self, name_or_id: str) -> Schedule:
        """The schedule with this id, else the one with this name."""
        try:
            return await self.get(name_or_id)
        except NotFound:
            pass
        found = [s async for s in self.list_all() if s.name == name_or_id]
        if not found:
            raise NotFound(f"no schedule is named {name_or_id!r} or has that id")
        if len(found) > 1:
            # Names are unique per owner: an admin can see several.
            ids = ", ".join(s.id for s in found)
            raise InvalidArgument.field(
                "schedule", f"{len(found)} schedules are named {name_or_id!r}: give an id ({ids})"
            )
        return found[0]

    async def update(
        self,
        schedule_id: str,
        name: str,
        *,
        cron: str | None = None,
        interval: Duration | None = None,
        time_zone: str = "UTC",
        task: TaskSpec | None = None,
        workflow: str | None = None,
        input: Mapping[str, Any] | None = None,
        overlap: Overlap | str = Overlap.SKIP,
        jitter: Duration = 0,
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        catchup_window: Duration = 0,
    ) -> Schedule:
        """Replace the whole spec (as `create` takes it; paused or not and
        the note stay as they are). The last fire is kept; the next times
        are computed anew from now."""
        spec = await self._request(
            name,
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            task=task,
            workflow=workflow,
            input=input,
            overlap=overlap,
            jitter=jitter,
            start_at=start_at,
            end_at=end_at,
            catchup_window=catchup_window,
        )
        request = schedules_pb2.UpdateScheduleRequest(id=schedule_id, schedule=spec)
        reply = await self._transport.unary(
            lambda s: s.schedules.UpdateSchedule, request, idempotent=False
        )
        return _convert_schedules.schedule(reply)

    async def delete(self, schedule_id: str) -> None:
        """Delete the schedule; what it started goes on."""
        request = schedules_pb2.DeleteScheduleRequest(id=schedule_id)
        await self._transport.unary(lambda s: s.schedules.DeleteSchedule, request, idempotent=False)

    async def pause(self, schedule_id: str, note: str = "") -> Schedule:
        """Once it returns nothing more fires until `resume`."""
        request = schedules_pb2.PauseScheduleRequest(id=schedule_id, note=note)
        reply = await self._transport.unary(
            lambda s: s.schedules.PauseSchedule, request, idempotent=True
        )
        return _convert_schedules.schedule(reply)

    async def resume(self, schedule_id: str, note: str = "") -> Schedule:
        """Fire again from the next time after now: times missed while
        paused do not run."""
        request = schedules_pb2.ResumeScheduleRequest(id=schedule_id, note=note)
        reply = await self._transport.unary(
            lambda s: s.schedules.ResumeSchedule, request, idempotent=True
        )
        return _convert_schedules.schedule(reply)

    async def trigger(self, schedule_id: str) -> Fire:
        """Fire now, once, whatever the overlap policy."""
        request = schedules_pb2.TriggerScheduleRequest(id=schedule_id)
        reply = await self._transport.unary(
            lambda s: s.schedules.TriggerSchedule, request, idempotent=False
        )
        return _convert_schedules.fire(reply.fire)

    async def backfill(
        self, schedule_id: str, start_at: datetime, end_at: datetime
    ) -> builtins.list[Fire]:
        """Fire once for every scheduled time in (start_at, end_at] not fired
        yet (at most 1,000), whatever the overlap policy; the fires in order."""
        request = schedules_pb2.BackfillScheduleRequest(
            id=schedule_id,
            start_at=_convert.timestamp(start_at),
            end_at=_convert.timestamp(end_at),
        )
        # Not repeated: a second try would leave out what the first fired.
        reply = await self._transport.unary(
            lambda s: s.schedules.BackfillSchedule, request, idempotent=False
        )
        return [_convert_schedules.fire(f) for f in reply.fires]

    async def _request(
        self,
        name: str,
        *,
        cron: str | None,
        interval: Duration | None,
        time_zone: str,
        task: TaskSpec | None,
        workflow: str | None,
        input: Mapping[str, Any] | None,
        overlap: Overlap | str,
        jitter: Duration,
        start_at: datetime | None,
        end_at: datetime | None,
        catchup_window: Duration,
    ) -> schedules_pb2.CreateScheduleRequest:
        """The request's fields; which of them are missing or clash is the
        server's to say, with all its field violations at once."""
        request = schedules_pb2.CreateScheduleRequest(
            name=name,
            cron=cron or "",
            interval_seconds=seconds(interval, "interval_seconds"),
            time_zone=time_zone,
            overlap=_convert_schedules.overlap_message(overlap_policy(overlap)),
            jitter_seconds=seconds(jitter, "jitter_seconds"),
            catchup_window_seconds=seconds(catchup_window, "catchup_window_seconds"),
        )
        if task is not None:
            request.task.CopyFrom(template(task))
        if workflow:
            request.workflow_id = (await self._workflows.find(workflow)).id
        if input is not None:
            request.input.CopyFrom(_convert.struct(input, "input"))
        if start_at is not None:
            request.start_at.CopyFrom(_convert.timestamp(start_at))
        if end_at is not None:
            request.end_at.CopyFrom(_convert.timestamp(end_at))
        return request


def template(spec: TaskSpec) -> tasks_pb2.CreateTaskRequest:
    """The CreateTaskRequest each fire creates a task from. No idempotency
    key is made up for it: every fire creates a task of its own, and the
    server refuses a template that has one."""
    request = _create_request(spec, "task.input")
    if spec.idempotency_key is None:
        request.ClearField("idempotency_key")
    return request


def overlap_policy(value: Overlap | str) -> Overlap:
    """ "skip", "buffer_one", "BUFFER_ONE", "buffer-one" as the policy."""
    if isinstance(value, Overlap):
        return value
    try:
        return Overlap(value.strip().upper().replace("-", "_"))
    except ValueError:
        allowed = ", ".join(p.value.lower() for p in Overlap)
        raise InvalidArgument.field("overlap", f"must be one of {allowed}") from None


def seconds(value: Duration | None, field: str) -> int:
    """A duration as the whole seconds the request carries (None: 0)."""
    if value is None:
        return 0
    total = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(total, bool) or not float(total).is_integer():
        raise InvalidArgument.field(field, f"must be whole seconds, not {value!r}")
    if abs(total) > _MAX_SECONDS:
        raise InvalidArgument.field(field, f"must be at most {_MAX_SECONDS} seconds")
    return int(total)
