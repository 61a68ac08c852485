"""From protobuf to the client's values, and the few ways back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from orchestrator.client._values import (
    ApiToken,
    ConnectedWorker,
    Health,
    NodeRun,
    RatePeriod,
    Task,
    TaskEvent,
    User,
    WhoAmI,
    Workflow,
    WorkflowEvent,
    WorkflowRun,
)
from orchestrator.errors import InvalidArgument
from orchestrator.model import (
    ConcurrencyStrategy,
    Definition,
    EdgeSpec,
    NodeSpec,
    NodeStatus,
    RunStatus,
    TaskEventType,
    TaskStatus,
    WaitReason,
    WorkflowEventType,
)
from orchestrator.proto import auth_pb2, health_pb2, tasks_pb2, workers_pb2, workflows_pb2

# The worker SDK's walk keeps integers integers (`json_format` makes every
# number a float, so an echo of {"n": 3} would come back as {"n": 3.0}).
from orchestrator.structs import to_dict, to_struct

E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], name: str, prefix: str) -> E | None:
    """The enum member a proto enum's name stands for; None for UNSPECIFIED."""
    short = name.removeprefix(prefix)
    return None if short == "UNSPECIFIED" else kind(short)


def _time(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A Timestamp; a naive datetime is local time, as `datetime.timestamp()`
    reads it."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _struct(message: Message, field: str) -> dict[str, Any] | None:
    if not message.HasField(field):
        return None
    value: struct_pb2.Struct = getattr(message, field)
    ordered: dict[str, Any] = _sorted(to_dict(value))
    return ordered


def _sorted(value: Any) -> Any:
    """Keys in order: a Struct keeps none, and a stable one reads better
    than a different one each time."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def struct(value: Mapping[str, Any] | None, where: str) -> struct_pb2.Struct:
    """A JSON object as a Struct; InvalidArgument naming a value JSON cannot hold."""
    if value is None:
        return struct_pb2.Struct()
    if not isinstance(value, Mapping):
        raise InvalidArgument.field(where, f"must be a JSON object, not {type(value).__name__}")
    try:
        return to_struct(value, where)
    except ValueError as exc:
        # "input.when: a set is not JSON (...)": the path, then the problem.
        field, _, problem = str(exc).partition(": ")
        raise InvalidArgument.field(field, problem) from None


def task_status(value: tasks_pb2.TaskStatus.ValueType) -> TaskStatus:
    status = _enum(TaskStatus, tasks_pb2.TaskStatus.Name(value), "TASK_STATUS_")
    assert status is not None, "the server sent a task without a status"
    return status


def task(message: tasks_pb2.Task) -> Task:
    return Task(
        id=message.id,
        title=message.title,
        type=message.type,
        status=task_status(message.status),
        input=_struct(message, "input") or {},
        output=_struct(message, "output"),
        error=message.error,
        attempt=message.attempt,
        max_attempts=message.max_attempts,
        timeout_seconds=message.timeout_seconds,
        priority=message.priority,
        description=message.description,
        labels=dict(message.labels),
        idempotency_key=message.idempotency_key,
        owner_id=message.owner_id,
        progress=message.progress,
        progress_message=message.progress_message,
        worker_id=message.worker_id,
        workflow_run_id=message.workflow_run_id,
        node_id=message.node_id,
        last_sequence=message.last_sequence,
        created_at=_time(message, "created_at"),
        updated_at=_time(message, "updated_at"),
        started_at=_time(message, "started_at"),
        finished_at=_time(message, "finished_at"),
        not_before=_time(message, "not_before"),
        concurrency_key=message.concurrency_key,
        concurrency_limit=message.concurrency_limit,
        concurrency_strategy=concurrency_strategy(message.concurrency_strategy),
        rate_limit_bucket=message.rate_limit_bucket,
        rate_limit=message.rate_limit,
        rate_limit_period=rate_period(message.rate_limit_period),
        schedule_id=message.schedule_id,
        scheduled_at=_time(message, "scheduled_at"),
        wait_reason=_enum(
            WaitReason, tasks_pb2.TaskWaitReason.Name(message.wait_reason), "TASK_WAIT_REASON_"
        ),
        waiting=message.waiting,
    )


def concurrency_strategy(
    value: tasks_pb2.ConcurrencyStrategy.ValueType,
) -> ConcurrencyStrategy | None:
    name = tasks_pb2.ConcurrencyStrategy.Name(value)
    return _enum(ConcurrencyStrategy, name, "CONCURRENCY_STRATEGY_")


def strategy_message(
    strategy: ConcurrencyStrategy | str | None,
) -> tasks_pb2.ConcurrencyStrategy.ValueType:
    """None: unspecified (the server queues)."""
    if strategy is None:
        return tasks_pb2.CONCURRENCY_STRATEGY_UNSPECIFIED
    return tasks_pb2.ConcurrencyStrategy.Value(
        f"CONCURRENCY_STRATEGY_{ConcurrencyStrategy(strategy).value}"
    )


def rate_period(value: tasks_pb2.RateLimitPeriod.ValueType) -> RatePeriod | None:
    return _PERIOD_NAMES.get(value)


def rate_period_message(period: str | None) -> tasks_pb2.RateLimitPeriod.ValueType:
    """None: unspecified."""
    if not period:
        return tasks_pb2.RATE_LIMIT_PERIOD_UNSPECIFIED
    for number, name in _PERIOD_NAMES.items():
        if name == period:
            return number
    raise ValueError(f"rate_limit_period {period!r}: name one: second, minute or hour")


_PERIOD_NAMES: dict[tasks_pb2.RateLimitPeriod.ValueType, RatePeriod] = {
    tasks_pb2.RATE_LIMIT_PERIOD_SECOND: "second",
    tasks_pb2.RATE_LIMIT_PERIOD_MINUTE: "minute",
    tasks_pb2.RATE_LIMIT_PERIOD_HOUR: "hour",
}
# A workflow node's period, in seconds as the model keeps it.
_PERIOD_SECONDS = {
    tasks_pb2.RATE_LIMIT_PERIOD_SECOND: 1,
    tasks_pb2.RATE_LIMIT_PERIOD_MINUTE: 60,
    tasks_pb2.RATE_LIMIT_PERIOD_HOUR: 3600,
}
_PERIOD_NUMBERS = {seconds: number for number, seconds in _PERIOD_SECONDS.items()}


def duration(value: timedelta | float) -> duration_pb2.Duration:
    """A delay in seconds or as a timedelta."""
    message = duration_pb2.Duration()
    message.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return message


def task_event(message: tasks_pb2.TaskEvent) -> TaskEvent:
    kind = _enum(TaskEventType, tasks_pb2.TaskEventType.Name(message.type), "TASK_EVENT_TYPE_")
    assert kind is not None, "the server sent an event without a type"
    return TaskEvent(
        sequence=message.sequence,
        task_id=message.task_id,
        type=kind,
        status=task_status(message.status),
        timestamp=_time(message, "timestamp"),
        attempt=message.attempt,
        progress=message.progress,
        message=message.message,
        output=_struct(message, "output"),
        worker_id=message.worker_id,
    )


def definition(message: workflows_pb2.WorkflowDefinition) -> Definition:
    return Definition(
        nodes=tuple(
            NodeSpec(
                id=n.id,
                type=n.type,
                input=_struct(n, "input") or {},
                input_expression=n.input_expression,
                max_attempts=n.max_attempts,
                timeout_seconds=n.timeout_seconds,
                description=n.description,
                concurrency_key_expression=n.concurrency_key_expression,
                concurrency_limit=n.concurrency_limit,
                concurrency_strategy=concurrency_strategy(n.concurrency_strategy)
                or ConcurrencyStrategy.QUEUE,
                rate_limit_bucket_expression=n.rate_limit_bucket_expression,
                rate_limit=n.rate_limit,
                rate_limit_period_seconds=_PERIOD_SECONDS.get(n.rate_limit_period, 0),
            )
            for n in message.nodes
        ),
        edges=tuple(EdgeSpec(e.source, e.target, e.condition) for e in message.edges),
    )


def definition_message(value: Definition) -> workflows_pb2.WorkflowDefinition:
    return workflows_pb2.WorkflowDefinition(
        nodes=[
            workflows_pb2.Node(
                id=n.id,
                type=n.type,
                input=struct(n.input, f"definition.nodes[{index}].input"),
                input_expression=n.input_expression,
                max_attempts=n.max_attempts,
                timeout_seconds=n.timeout_seconds,
                description=n.description,
                concurrency_key_expression=n.concurrency_key_expression,
                concurrency_limit=n.concurrency_limit,
                concurrency_strategy=strategy_message(
                    n.concurrency_strategy if n.concurrency_key_expression else None
                ),
                rate_limit_bucket_expression=n.rate_limit_bucket_expression,
                rate_limit=n.rate_limit,
                # A period the server does not know is left for it to refuse.
                rate_limit_period=_PERIOD_NUMBERS.get(
                    n.rate_limit_period_seconds, tasks_pb2.RATE_LIMIT_PERIOD_UNSPECIFIED
                ),
            )
            for index, n in enumerate(value.nodes)
        ],
        edges=[
            workflows_pb2.Edge(source=e.source, target=e.target, condition=e.condition)
            for e in value.edges
        ],
    )


def workflow(message: workflows_pb2.Workflow) -> Workflow:
    return Workflow(
        id=message.id,
        name=message.name,
        version=message.version,
        definition=definition(message.definition),
        description=message.description,
        owner_id=message.owner_id,
        created_at=_time(message, "created_at"),
        updated_at=_time(message, "updated_at"),
    )


def run_status(value: workflows_pb2.WorkflowRunStatus.ValueType) -> RunStatus:
    status = _enum(RunStatus, workflows_pb2.WorkflowRunStatus.Name(value), "WORKFLOW_RUN_STATUS_")
    assert status is not None, "the server sent a run without a status"
    return status


def _node_status(value: workflows_pb2.NodeStatus.ValueType) -> NodeStatus | None:
    return _enum(NodeStatus, workflows_pb2.NodeStatus.Name(value), "NODE_STATUS_")


def run(message: workflows_pb2.WorkflowRun) -> WorkflowRun:
    return WorkflowRun(
        id=message.id,
        workflow_id=message.workflow_id,
        workflow_version=message.workflow_version,
        status=run_status(message.status),
        nodes=tuple(
            NodeRun(
                node_id=n.node_id,
                status=_node_status(n.status),
                task_id=n.task_id,
                output=_struct(n, "output"),
                error=n.error,
                started_at=_time(n, "started_at"),
                finished_at=_time(n, "finished_at"),
            )
            for n in message.nodes
        ),
        input=_struct(message, "input") or {},
        error=message.error,
        owner_id=message.owner_id,
        last_sequence=message.last_sequence,
        created_at=_time(message, "created_at"),
        finished_at=_time(message, "finished_at"),
        not_before=_time(message, "not_before"),
        schedule_id=message.schedule_id,
        scheduled_at=_time(message, "scheduled_at"),
    )


def run_event(message: workflows_pb2.WorkflowEvent) -> WorkflowEvent:
    kind = _enum(
        WorkflowEventType,
        workflows_pb2.WorkflowEventType.Name(message.type),
        "WORKFLOW_EVENT_TYPE_",
    )
    assert kind is not None, "the server sent an event without a type"
    return WorkflowEvent(
        sequence=message.sequence,
        run_id=message.run_id,
        type=kind,
        status=run_status(message.status),
        timestamp=_time(message, "timestamp"),
        node_id=message.node_id,
        node_status=_node_status(message.node_status),
        task_id=message.task_id,
        output=_struct(message, "output"),
        message=message.message,
        progress=message.progress,
    )


def user(message: auth_pb2.User) -> User:
    return User(
        id=message.id,
        username=message.username,
        role=message.role,
        disabled=message.disabled,
        created_at=_time(message, "created_at"),
    )


def whoami(message: auth_pb2.WhoAmIResponse) -> WhoAmI:
    return WhoAmI(user=user(message.user), credential=message.credential, scope=message.scope)


def api_token(message: auth_pb2.ApiToken) -> ApiToken:
    return ApiToken(
        id=message.id,
        name=message.name,
        scope=message.scope,
        prefix=message.prefix,
        owner_id=message.owner_id,
        created_at=_time(message, "created_at"),
        expires_at=_time(message, "expires_at"),
        last_used_at=_time(message, "last_used_at"),
        revoked_at=_time(message, "revoked_at"),
    )


def connected_worker(message: workers_pb2.Worker) -> ConnectedWorker:
    return ConnectedWorker(
        id=message.id,
        name=message.name,
        task_types=tuple(message.task_types),
        slots=message.slots,
        busy_slots=message.busy_slots,
        owner_id=message.owner_id,
        connected_at=_time(message, "connected_at"),
    )


def health(message: health_pb2.CheckResponse) -> Health:
    return Health(
        status=health_pb2.HealthStatus.Name(message.status).removeprefix("HEALTH_STATUS_"),
        version=message.version,
        uptime_seconds=message.uptime_seconds,
        metadata=dict(message.metadata),
    )
