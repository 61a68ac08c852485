"""Schedules and their fires between the domain and protobuf."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from google.protobuf import timestamp_pb2

from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import NewTask, Overlap, Schedule, ScheduleFire, ScheduleSpec
from orchestrator.proto import schedules_pb2, tasks_pb2
from orchestrator.services.convert import (
    domain_enum,
    from_struct,
    from_timestamp,
    struct,
    timestamp,
    wire_enum,
)
from orchestrator.services.convert_tasks import limit_fields, new_task


def spec_domain(
    request: schedules_pb2.CreateScheduleRequest, default_max_attempts: int, now: datetime
) -> tuple[ScheduleSpec, list[FieldViolation]]:
    """The spec, and what is wrong with its task template (then left out of
    the spec), for the engine to report with every other problem at once."""
    workflow_id = request.workflow_id or None
    task: NewTask | None = None
    problems: list[FieldViolation] = []
    if request.HasField("task"):
        try:
            task = _template(request.task, default_max_attempts, now)
        except InvalidArgument as invalid:
            problems = list(invalid.under("task.").violations)
    spec = ScheduleSpec(
        name=request.name,
        cron=request.cron,
        interval_seconds=request.interval_seconds,
        time_zone=request.time_zone,
        task=task,
        workflow_id=workflow_id,
        input=from_struct(request.input),
        overlap=domain_enum(schedules_pb2.OverlapPolicy, request.overlap, Overlap) or Overlap.SKIP,
        jitter_seconds=request.jitter_seconds,
        start_at=from_timestamp(request, "start_at"),
        end_at=from_timestamp(request, "end_at"),
        catchup_window_seconds=request.catchup_window_seconds,
    )
    return spec, problems


def _template(
    request: tasks_pb2.CreateTaskRequest, default_max_attempts: int, now: datetime
) -> NewTask:
    """The task each fire creates, queued at once whatever `start` says."""
    return dataclasses.replace(new_task(request, default_max_attempts, now), start=True)


def template_message(task: NewTask) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(
        title=task.title,
        type=task.type,
        input=struct(task.input),
        start=True,
        description=task.description,
        labels=task.labels,
        priority=task.priority,
        max_attempts=task.max_attempts,
        timeout_seconds=task.timeout_seconds,
        **limit_fields(task.concurrency, task.rate_limit),
    )


def schedule_message(schedule: Schedule, next_fire_times: list[datetime]) -> schedules_pb2.Schedule:
    spec = schedule.spec
    return schedules_pb2.Schedule(
        id=schedule.id,
        name=spec.name,
        cron=spec.cron,
        interval_seconds=spec.interval_seconds,
        time_zone=spec.time_zone or "UTC",
        paused=schedule.paused,
        next_fire_times=[_stamp(t) for t in next_fire_times],
        task=template_message(spec.task) if spec.task else None,
        workflow_id=spec.workflow_id or "",
        input=struct(spec.input) if spec.workflow_id else None,
        overlap=wire_enum(schedules_pb2.OverlapPolicy, spec.overlap),
        jitter_seconds=spec.jitter_seconds,
        start_at=timestamp(spec.start_at),
        end_at=timestamp(spec.end_at),
        catchup_window_seconds=spec.catchup_window_seconds,
        note=schedule.note,
        owner_id=schedule.owner_id,
        created_at=timestamp(schedule.created_at),
        updated_at=timestamp(schedule.updated_at),
        last_fired_at=timestamp(schedule.last_fired_at),
        last_task_id=schedule.last_task_id or "",
        last_run_id=schedule.last_run_id or "",
    )


def fire_message(fire: ScheduleFire) -> schedules_pb2.ScheduleFire:
    return schedules_pb2.ScheduleFire(
        scheduled_at=timestamp(fire.scheduled_at),
        task_id=fire.task_id or "",
        run_id=fire.run_id or "",
    )


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
