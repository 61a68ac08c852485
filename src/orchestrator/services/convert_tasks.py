"""Tasks and their events between the domain and protobuf."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.errors import InvalidArgument
from orchestrator.model import (
    Concurrency,
    ConcurrencyStrategy,
    NewTask,
    RateLimit,
    Task,
    TaskEvent,
    TaskStatus,
    WaitReason,
)
from orchestrator.proto import tasks_pb2, workflows_pb2
from orchestrator.services.convert import (
    domain_enum,
    from_struct,
    from_timestamp,
    struct,
    timestamp,
    wire_enum,
)

PERIOD_SECONDS = {
    tasks_pb2.RATE_LIMIT_PERIOD_SECOND: 1,
    tasks_pb2.RATE_LIMIT_PERIOD_MINUTE: 60,
    tasks_pb2.RATE_LIMIT_PERIOD_HOUR: 3600,
}
PERIOD_WIRE = {seconds: wire for wire, seconds in PERIOD_SECONDS.items()}


def status_domain(value: tasks_pb2.TaskStatus.ValueType) -> TaskStatus | None:
    return domain_enum(tasks_pb2.TaskStatus, value, TaskStatus)


# A Duration may span 10,000 years; a start time must stay a datetime.
MAX_DELAY = timedelta(days=100 * 366)


def start_time(
    request: tasks_pb2.CreateTaskRequest | workflows_pb2.ExecuteWorkflowRequest, now: datetime
) -> datetime | None:
    """The time a request asks to start at: its `not_before`, or its
    `delay` from now."""
    not_before = from_timestamp(request, "not_before")
    if not request.HasField("delay"):
        return not_before
    if not_before is not None:
        raise InvalidArgument.field("delay", "give not_before or delay, not both")
    delay = request.delay
    if delay.seconds < 0 or delay.nanos < 0:
        raise InvalidArgument.field("delay", "must not be negative")
    if delay.seconds > MAX_DELAY.total_seconds():
        raise InvalidArgument.field("delay", f"must be at most {MAX_DELAY.days} days")
    return now + delay.ToTimedelta()


def concurrency_domain(
    key: str, limit: int, strategy: tasks_pb2.ConcurrencyStrategy.ValueType
) -> Concurrency | None:
    """None when nothing is asked; a partial one is left to validation."""
    if not (key or limit or strategy):
        return None
    chosen = domain_enum(tasks_pb2.ConcurrencyStrategy, strategy, ConcurrencyStrategy)
    return Concurrency(key, limit, chosen or ConcurrencyStrategy.QUEUE)


def rate_limit_domain(
    bucket: str, limit: int, period: tasks_pb2.RateLimitPeriod.ValueType
) -> RateLimit | None:
    if not (bucket or limit or period):
        return None
    return RateLimit(bucket, limit, PERIOD_SECONDS.get(period, 0))


def new_task(
    request: tasks_pb2.CreateTaskRequest, default_max_attempts: int, now: datetime
) -> NewTask:
    return NewTask(
        title=request.title or request.type,
        type=request.type,
        input=from_struct(request.input),
        start=request.start,
        description=request.description,
        labels=dict(request.labels),
        priority=request.priority,
        max_attempts=request.max_attempts or default_max_attempts,
        timeout_seconds=request.timeout_seconds,
        idempotency_key=request.idempotency_key or None,
        not_before=start_time(request, now),
        concurrency=concurrency_domain(
            request.concurrency_key, request.concurrency_limit, request.concurrency_strategy
        ),
        rate_limit=rate_limit_domain(
            request.rate_limit_bucket, request.rate_limit, request.rate_limit_period
        ),
    )


def limit_fields(concurrency: Concurrency | None, rate: RateLimit | None) -> dict[str, Any]:
    """The concurrency and rate-limit fields, named alike on Task and
    CreateTaskRequest."""
    return {
        "concurrency_key": concurrency.key if concurrency else "",
        "concurrency_limit": concurrency.limit if concurrency else 0,
        "concurrency_strategy": wire_enum(
            tasks_pb2.ConcurrencyStrategy, concurrency.strategy if concurrency else None
        ),
        "rate_limit_bucket": rate.bucket if rate else "",
        "rate_limit": rate.limit if rate else 0,
        "rate_limit_period": PERIOD_WIRE[rate.period_seconds]
        if rate
        else tasks_pb2.RATE_LIMIT_PERIOD_UNSPECIFIED,
    }


def task_message(task: Task, waiting: tuple[WaitReason, str] | None = None) -> tasks_pb2.Task:
    """`waiting`: why a queued task has not started (GetTask says)."""
    origin = task.origin
    return tasks_pb2.Task(
        id=task.id,
        title=task.title,
        type=task.type,
        status=wire_enum(tasks_pb2.TaskStatus, task.status),
        input=struct(task.input),
        output=struct(task.output),
        error=task.error,
        attempt=task.attempt,
        created_at=timestamp(task.created_at),
        started_at=timestamp(task.started_at),
        finished_at=timestamp(task.finished_at),
        description=task.description,
        labels=task.labels,
        priority=task.priority,
        max_attempts=task.max_attempts,
        timeout_seconds=task.timeout_seconds,
        idempotency_key=task.idempotency_key or "",
        owner_id=task.owner_id,
        updated_at=timestamp(task.updated_at),
        progress=task.progress,
        progress_message=task.progress_message,
        worker_id=task.worker_id or "",
        workflow_run_id=task.workflow_run_id or "",
        node_id=task.node_id or "",
        last_sequence=task.last_sequence,
        not_before=timestamp(task.not_before),
        **limit_fields(task.concurrency, task.rate_limit),
        schedule_id=origin.schedule_id if origin else "",
        scheduled_at=timestamp(origin.scheduled_at if origin else None),
        wait_reason=wire_enum(tasks_pb2.TaskWaitReason, waiting[0] if waiting else None),
        waiting=waiting[1] if waiting else "",
    )


def event_message(event: TaskEvent) -> tasks_pb2.TaskEvent:
    return tasks_pb2.TaskEvent(
        sequence=event.sequence,
        task_id=event.task_id,
        type=wire_enum(tasks_pb2.TaskEventType, event.type),
        status=wire_enum(tasks_pb2.TaskStatus, event.status),
        timestamp=timestamp(event.created_at),
        attempt=event.attempt,
        progress=event.progress,
        message=event.message,
        output=struct(event.output),
        worker_id=event.worker_id or "",
    )
