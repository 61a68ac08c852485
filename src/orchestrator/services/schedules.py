"""orchestrator.schedules.ScheduleService."""

from __future__ import annotations

from typing import Any

from grpc import aio

from orchestrator.auth import identity
from orchestrator.engine.schedule_times import upcoming
from orchestrator.engine.schedules import ScheduleEngine
from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import Schedule, ScheduleSpec
from orchestrator.proto import schedules_pb2, schedules_pb2_grpc
from orchestrator.services.convert import from_timestamp
from orchestrator.services.convert_schedules import fire_message, schedule_message, spec_domain
from orchestrator.store.types import utcnow

Context = aio.ServicerContext[Any, Any]
# How many of the next fire times a schedule shows.
NEXT_FIRE_TIMES = 5


def _message(schedule: Schedule) -> schedules_pb2.Schedule:
    return schedule_message(schedule, upcoming(schedule, NEXT_FIRE_TIMES))


class ScheduleService(schedules_pb2_grpc.ScheduleServiceServicer):
    def __init__(self, engine: ScheduleEngine, default_max_attempts: int) -> None:
        self._engine = engine
        self._default_max_attempts = default_max_attempts

    def _spec(
        self, request: schedules_pb2.CreateScheduleRequest
    ) -> tuple[ScheduleSpec, list[FieldViolation]]:
        return spec_domain(request, self._default_max_attempts, utcnow())

    async def CreateSchedule(
        self, request: schedules_pb2.CreateScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        spec, problems = self._spec(request)
        schedule = await self._engine.create(
            identity.current(), spec, paused=request.paused, note=request.note, problems=problems
        )
        return _message(schedule)

    async def GetSchedule(
        self, request: schedules_pb2.GetScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        return _message(await self._engine.get(identity.current(), request.id))

    async def ListSchedules(
        self, request: schedules_pb2.ListSchedulesRequest, context: Context
    ) -> schedules_pb2.ListSchedulesResponse:
        found, token = await self._engine.list_schedules(
            identity.current(), request.page_size, request.page_token
        )
        return schedules_pb2.ListSchedulesResponse(
            schedules=[_message(s) for s in found], next_page_token=token
        )

    async def UpdateSchedule(
        self, request: schedules_pb2.UpdateScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        try:
            spec, problems = self._spec(request.schedule)
            schedule = await self._engine.update(identity.current(), request.id, spec, problems)
        except InvalidArgument as invalid:
            # The spec's fields sit under `schedule` in this request.
            raise invalid.under("schedule.") from None
        return _message(schedule)

    async def DeleteSchedule(
        self, request: schedules_pb2.DeleteScheduleRequest, context: Context
    ) -> schedules_pb2.DeleteScheduleResponse:
        await self._engine.delete(identity.current(), request.id)
        return schedules_pb2.DeleteScheduleResponse()

    async def PauseSchedule(
        self, request: schedules_pb2.PauseScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        return _message(await self._engine.pause(identity.current(), request.id, request.note))

    async def ResumeSchedule(
        self, request: schedules_pb2.ResumeScheduleRequest, context: Context
    ) -> schedules_pb2.Schedule:
        return _message(await self._engine.resume(identity.current(), request.id, request.note))

    async def TriggerSchedule(
        self, request: schedules_pb2.TriggerScheduleRequest, context: Context
    ) -> schedules_pb2.TriggerScheduleResponse:
        fire = await self._engine.trigger(identity.current(), request.id)
        return schedules_pb2.TriggerScheduleResponse(fire=fire_message(fire))

    async def BackfillSchedule(
        self, request: schedules_pb2.BackfillScheduleRequest, context: Context
    ) -> schedules_pb2.BackfillScheduleResponse:
        fires = await self._engine.backfill(
            identity.current(),
            request.id,
            from_timestamp(request, "start_at"),
            from_timestamp(request, "end_at"),
        )
        return schedules_pb2.BackfillScheduleResponse(fires=[fire_message(f) for f in fires])
