"""Domain values shared by the engine, the store and the services: frozen
dataclasses and string enums, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Credential:
    """What a caller authenticated with: a login session (its refresh-token
    family) or an API token, and whose it is."""

    kind: str  # "session" or "api_token"
    user_id: str
    id: str


class TaskStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class ConcurrencyStrategy(StrEnum):
    QUEUE = "QUEUE"
    CANCEL_NEWEST = "CANCEL_NEWEST"
    CANCEL_OLDEST = "CANCEL_OLDEST"


class WaitReason(StrEnum):
    """Why a QUEUED task has not started yet."""

    NOT_BEFORE = "NOT_BEFORE"
    RETRY_BACKOFF = "RETRY_BACKOFF"
    CONCURRENCY_LIMIT = "CONCURRENCY_LIMIT"
    RATE_LIMIT = "RATE_LIMIT"
    NO_WORKER = "NO_WORKER"
    NO_FREE_SLOT = "NO_FREE_SLOT"


@dataclass(frozen=True)
class Concurrency:
    """At most `limit` of the owner's tasks with `key` run at once."""

    key: str
    limit: int
    strategy: ConcurrencyStrategy = ConcurrencyStrategy.QUEUE


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts per `period_seconds` across the owner's tasks
    naming `bucket`, evenly spaced."""

    bucket: str
    limit: int
    period_seconds: int

    @property
    def spacing_seconds(self) -> float:
        return self.period_seconds / self.limit


@dataclass(frozen=True)
class Origin:
    """The schedule that started a task or run, and for which time."""

    schedule_id: str
    scheduled_at: datetime


class TaskEventType(StrEnum):
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    PROGRESS = "PROGRESS"
    LOG = "LOG"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    CANCELLED = "CANCELLED"
    UPDATED = "UPDATED"
    REQUEUED = "REQUEUED"


@dataclass(frozen=True)
class Task:
    id: str
    owner_id: str
    title: str
    type: str
    status: TaskStatus
    input: JsonObject
    output: JsonObject | None
    error: str
    attempt: int
    max_attempts: int
    timeout_seconds: int
    priority: int
    description: str
    labels: dict[str, str]
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: int
    progress_message: str
    worker_id: str | None
    fencing_token: int
    last_sequence: int
    lease_expires_at: datetime | None = None
    deadline_at: datetime | None = None
    workflow_run_id: str | None = None
    node_id: str | None = None
    # Attempts given back because their worker was lost (not counted in
    # `attempt`); past the server's limit the task fails as a poison task.
    lost_deliveries: int = 0
    not_before: datetime | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    origin: Origin | None = None
    # When it may be claimed (not_before, or a retry's backoff): QUEUED only.
    available_at: datetime | None = None
    # The W3C traceparent of the call that created it, continued by its worker.
    trace_context: str | None = None


@dataclass(frozen=True)
class TaskEvent:
    task_id: str
    sequence: int
    type: TaskEventType
    status: TaskStatus
    created_at: datetime
    attempt: int = 0
    progress: int = 0
    message: str = ""
    output: JsonObject | None = None
    worker_id: str | None = None

    @property
    def ends_execution(self) -> bool:
        return self.type in ENDING_EVENTS


ENDING_EVENTS = frozenset({TaskEventType.SUCCEEDED, TaskEventType.FAILED, TaskEventType.CANCELLED})


@dataclass(frozen=True)
class NewTask:
    """A task as asked for, validated, before it is stored."""

    title: str
    type: str
    input: JsonObject
    start: bool = False
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    timeout_seconds: int = 0
    idempotency_key: str | None = None
    not_before: datetime | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None


# -- workflows ---------------------------------------------------------------


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class NodeStatus(StrEnum):
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in FINISHED_NODE


FINISHED_NODE = frozenset(
    {NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)


class WorkflowEventType(StrEnum):
    RUN_STARTED = "RUN_STARTED"
    NODE_QUEUED = "NODE_QUEUED"
    NODE_STARTED = "NODE_STARTED"
    NODE_PROGRESS = "NODE_PROGRESS"
    NODE_SUCCEEDED = "NODE_SUCCEEDED"
    NODE_FAILED = "NODE_FAILED"
    NODE_SKIPPED = "NODE_SKIPPED"
    NODE_CANCELLED = "NODE_CANCELLED"
    CHECKPOINT_SAVED = "CHECKPOINT_SAVED"
    RUN_SUCCEEDED = "RUN_SUCCEEDED"
    RUN_FAILED = "RUN_FAILED"
    RUN_CANCELLED = "RUN_CANCELLED"


RUN_ENDING_EVENTS = frozenset(
    {WorkflowEventType.RUN_SUCCEEDED, WorkflowEventType.RUN_FAILED, WorkflowEventType.RUN_CANCELLED}
)


@dataclass(frozen=True)
class NodeSpec:
    id: str
    type: str
    input: JsonObject = field(default_factory=dict)
    input_expression: str = ""
    max_attempts: int = 0
    timeout_seconds: int = 0
    description: str = ""
    # CEL over the run's input and finished nodes' outputs, yielding a
    # string: the task's concurrency key and rate-limit bucket (empty: none).
    concurrency_key_expression: str = ""
    concurrency_limit: int = 0
    concurrency_strategy: ConcurrencyStrategy = ConcurrencyStrategy.QUEUE
    rate_limit_bucket_expression: str = ""
    rate_limit: int = 0
    rate_limit_period_seconds: int = 0


@dataclass(frozen=True)
class EdgeSpec:
    source: str
    target: str
    condition: str = ""


@dataclass(frozen=True)
class Definition:
    nodes: tuple[NodeSpec, ...]
    edges: tuple[EdgeSpec, ...]


@dataclass(frozen=True)
class Workflow:
    id: str
    owner_id: str
    name: str
    version: int
    description: str
    definition: Definition
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NodeRun:
    node_id: str
    status: NodeStatus
    task_id: str | None
    output: JsonObject | None
    error: str
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class WorkflowRun:
    id: str
    workflow_id: str
    version: int
    owner_id: str
    status: RunStatus
    input: JsonObject
    error: str
    created_at: datetime
    finished_at: datetime | None
    last_sequence: int
    nodes: tuple[NodeRun, ...] = ()
    not_before: datetime | None = None
    origin: Origin | None = None
    # The W3C traceparent of the call that started it, shared by its nodes' tasks.
    trace_context: str | None = None


@dataclass(frozen=True)
class WorkflowEvent:
    run_id: str
    sequence: int
    type: WorkflowEventType
    status: RunStatus
    created_at: datetime
    node_id: str = ""
    node_status: NodeStatus | None = None
    task_id: str | None = None
    output: JsonObject | None = None
    message: str = ""
    progress: int = 0


# -- schedules ---------------------------------------------------------------


class Overlap(StrEnum):
    """What a fire does while the previous fire's task or run is unfinished."""

    SKIP = "SKIP"
    BUFFER_ONE = "BUFFER_ONE"
    ALLOW_ALL = "ALLOW_ALL"
    CANCEL_OTHER = "CANCEL_OTHER"


@dataclass(frozen=True)
class ScheduleSpec:
    """What a schedule starts and when, as CreateSchedule and UpdateSchedule
    give it: a task template (`task`) or a workflow with its input."""

    name: str
    cron: str
    interval_seconds: int
    time_zone: str
    task: NewTask | None
    workflow_id: str | None
    input: JsonObject
    overlap: Overlap = Overlap.SKIP
    jitter_seconds: int = 0
    start_at: datetime | None = None
    end_at: datetime | None = None
    catchup_window_seconds: int = 0


@dataclass(frozen=True)
class Schedule:
    id: str
    owner_id: str
    spec: ScheduleSpec
    paused: bool
    note: str
    created_at: datetime
    updated_at: datetime
    # The next scheduled time not fired yet; None while paused or past the end.
    next_fire_at: datetime | None = None
    # A time held back by BUFFER_ONE until the previous fire ends.
    buffered_at: datetime | None = None
    last_fired_at: datetime | None = None
    last_task_id: str | None = None
    last_run_id: str | None = None


@dataclass(frozen=True)
class ScheduleFire:
    """One fire: the time it was for, and the task or run it started."""

    scheduled_at: datetime
    task_id: str | None = None
    run_id: str | None = None
