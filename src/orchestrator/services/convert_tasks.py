"""Tasks and their events between the domain and protobuf."""

from __future__ import annotations

from orchestrator.model import Task, TaskEvent, TaskStatus
from orchestrator.proto import tasks_pb2
from orchestrator.services.convert import domain_enum, struct, timestamp, wire_enum


def status_domain(value: tasks_pb2.TaskStatus.ValueType) -> TaskStatus | None:
    return domain_enum(tasks_pb2.TaskStatus, value, TaskStatus)


def task_message(task: Task) -> tasks_pb2.Task:
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
