"""Schedules from protobuf to the client's values, and their overlap
policy both ways."""

from __future__ import annotations

from datetime import UTC

from orchestrator.client._convert import _enum, _struct, _time, concurrency_strategy, rate_period
from orchestrator.client._values import Fire, Schedule, TaskSpec
from orchestrator.model import Overlap
from orchestrator.proto import schedules_pb2, tasks_pb2


def task_spec(message: tasks_pb2.CreateTaskRequest) -> TaskSpec:
    """A schedule's task template (never with a start time: each fire's
    task starts when it fires)."""
    return TaskSpec(
        type=message.type,
        input=_struct(message, "input") or {},
        title=message.title,
        start=message.start,
        description=message.description,
        labels=dict(message.labels),
        priority=message.priority,
        max_attempts=message.max_attempts,
        timeout_seconds=message.timeout_seconds,
        idempotency_key=message.idempotency_key or None,
        concurrency_key=message.concurrency_key,
        concurrency_limit=message.concurrency_limit,
        concurrency_strategy=concurrency_strategy(message.concurrency_strategy),
        rate_limit_bucket=message.rate_limit_bucket,
        rate_limit=message.rate_limit,
        rate_limit_period=rate_period(message.rate_limit_period),
    )


def overlap(value: schedules_pb2.OverlapPolicy.ValueType) -> Overlap:
    name = schedules_pb2.OverlapPolicy.Name(value)
    # Unspecified means the server's default, skip.
    return _enum(Overlap, name, "OVERLAP_POLICY_") or Overlap.SKIP


def overlap_message(policy: Overlap) -> schedules_pb2.OverlapPolicy.ValueType:
    return schedules_pb2.OverlapPolicy.Value(f"OVERLAP_POLICY_{policy.value}")


def schedule(message: schedules_pb2.Schedule) -> Schedule:
    return Schedule(
        id=message.id,
        name=message.name,
        cron=message.cron,
        interval_seconds=message.interval_seconds,
        time_zone=message.time_zone,
        paused=message.paused,
        next_fire_times=tuple(t.ToDatetime(tzinfo=UTC) for t in message.next_fire_times),
        task=task_spec(message.task) if message.HasField("task") else None,
        workflow_id=message.workflow_id,
        input=_struct(message, "input") or {},
        overlap=overlap(message.overlap),
        jitter_seconds=message.jitter_seconds,
        start_at=_time(message, "start_at"),
        end_at=_time(message, "end_at"),
        catchup_window_seconds=message.catchup_window_seconds,
        note=message.note,
        owner_id=message.owner_id,
        created_at=_time(message, "created_at"),
        updated_at=_time(message, "updated_at"),
        last_fired_at=_time(message, "last_fired_at"),
        last_task_id=message.last_task_id,
        last_run_id=message.last_run_id,
    )


def fire(message: schedules_pb2.ScheduleFire) -> Fire:
    return Fire(
        scheduled_at=_time(message, "scheduled_at"),
        task_id=message.task_id,
        run_id=message.run_id,
    )
