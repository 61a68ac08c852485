"""What the client hands back: frozen dataclasses of plain Python values,
never protobuf. The status and event enums are the server's own
(`orchestrator.model`), so both sides speak one vocabulary."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from orchestrator.model import (
    FINISHED_NODE,
    RUN_ENDING_EVENTS,
    TERMINAL,
    ConcurrencyStrategy,
    Definition,
    NodeStatus,
    Overlap,
    RunStatus,
    TaskEventType,
    TaskStatus,
    WaitReason,
    WorkflowEventType,
)

T = TypeVar("T")
JsonObject = dict[str, Any]
# A rate limit's period, as CreateTaskRequest.rate_limit_period names it.
RatePeriod = Literal["second", "minute", "hour"]

TASK_ENDING_EVENTS = frozenset(
    {TaskEventType.SUCCEEDED, TaskEventType.FAILED, TaskEventType.CANCELLED}
)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass `next_page_token` back for the next one
    (empty: this was the last)."""

    items: tuple[T, ...]
    next_page_token: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """A task to create: `client.tasks.create_many([TaskSpec("echo", {...}), ...])`.
    Without an `idempotency_key` one is made up, so a retried batch never
    makes a task twice."""

    type: str
    input: Mapping[str, Any] | None = None
    title: str = ""
    start: bool = False
    description: str = ""
    labels: Mapping[str, str] | None = None
    priority: int = 0
    max_attempts: int = 0
    timeout_seconds: int = 0
    idempotency_key: str | None = None
    # Not started before this time (a naive one is local time), or before
    # `delay` (seconds, or a timedelta) from now: one of the two at most.
    not_before: datetime | None = None
    delay: timedelta | float | None = None
    # At most `concurrency_limit` of the owner's tasks with this key run at once.
    concurrency_key: str = ""
    concurrency_limit: int = 0
    concurrency_strategy: ConcurrencyStrategy | None = None
    # Started at most `rate_limit` times per period across the owner's tasks
    # naming this bucket.
    rate_limit_bucket: str = ""
    rate_limit: int = 0
    rate_limit_period: RatePeriod | None = None


@dataclass(frozen=True)
class Task:
    id: str
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
    idempotency_key: str
    owner_id: str
    progress: int
    progress_message: str
    worker_id: str
    workflow_run_id: str
    node_id: str
    last_sequence: int
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None = None
    concurrency_key: str = ""
    concurrency_limit: int = 0
    concurrency_strategy: ConcurrencyStrategy | None = None
    rate_limit_bucket: str = ""
    rate_limit: int = 0
    rate_limit_period: RatePeriod | None = None
    # Set when a schedule started it: which, and for which time.
    schedule_id: str = ""
    scheduled_at: datetime | None = None
    # Why a QUEUED task has not started yet (from `get` only).
    wait_reason: WaitReason | None = None
    waiting: str = ""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class TaskEvent:
    sequence: int
    task_id: str
    type: TaskEventType
    # The task's status after the event.
    status: TaskStatus
    timestamp: datetime | None
    attempt: int = 0
    progress: int = 0
    # The progress message, log line, error or reason.
    message: str = ""
    output: JsonObject | None = None
    worker_id: str = ""

    @property
    def ends_execution(self) -> bool:
        return self.type in TASK_ENDING_EVENTS


@dataclass(frozen=True)
class Workflow:
    id: str
    name: str
    version: int
    definition: Definition
    description: str
    owner_id: str
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(frozen=True)
class NodeRun:
    node_id: str
    status: NodeStatus | None
    task_id: str
    output: JsonObject | None
    error: str
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_NODE


@dataclass(frozen=True)
class WorkflowRun:
    id: str
    workflow_id: str
    workflow_version: int
    status: RunStatus
    nodes: tuple[NodeRun, ...]
    input: JsonObject
    error: str
    owner_id: str
    last_sequence: int
    created_at: datetime | None
    finished_at: datetime | None
    # Its first nodes start no earlier.
    not_before: datetime | None = None
    # Set when a schedule started it: which, and for which time.
    schedule_id: str = ""
    scheduled_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status is not RunStatus.RUNNING

    def node(self, node_id: str) -> NodeRun:
        """The node of this run with that id; KeyError if there is none."""
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)


@dataclass(frozen=True)
class WorkflowEvent:
    sequence: int
    run_id: str
    type: WorkflowEventType
    # The run's status after the event.
    status: RunStatus
    timestamp: datetime | None
    # Empty for events of the whole run.
    node_id: str = ""
    node_status: NodeStatus | None = None
    task_id: str = ""
    output: JsonObject | None = None
    # The error, progress message or reason.
    message: str = ""
    progress: int = 0

    @property
    def ends_run(self) -> bool:
        return self.type in RUN_ENDING_EVENTS


@dataclass(frozen=True)
class Schedule:
    """A task or workflow run started on an interval or cron expression.
    Exactly one of `cron` and `interval_seconds` is set, and one of `task`
    (the template of each fire's task) and `workflow_id` (with `input`)."""

    id: str
    name: str
    cron: str
    interval_seconds: int
    time_zone: str
    paused: bool
    # The next few times it will fire; none while paused.
    next_fire_times: tuple[datetime, ...]
    task: TaskSpec | None
    workflow_id: str
    input: JsonObject
    overlap: Overlap
    jitter_seconds: int
    start_at: datetime | None
    end_at: datetime | None
    # 0: after downtime only the latest missed time fires.
    catchup_window_seconds: int
    # Why it was paused or resumed, as last given.
    note: str
    owner_id: str
    created_at: datetime | None
    updated_at: datetime | None
    # The scheduled time of the last fire, and what it started.
    last_fired_at: datetime | None
    last_task_id: str
    last_run_id: str


@dataclass(frozen=True)
class Fire:
    """One fire of a schedule: the time it was for and the task or workflow
    run it started."""

    scheduled_at: datetime | None
    task_id: str
    run_id: str


@dataclass(frozen=True)
class User:
    id: str
    username: str
    role: str
    disabled: bool
    created_at: datetime | None


@dataclass(frozen=True)
class WhoAmI:
    user: User
    # "session" for a login, "api_token" for an API token.
    credential: str
    # For API tokens: "worker" or "api".
    scope: str


@dataclass(frozen=True)
class ApiToken:
    id: str
    name: str
    scope: str
    # The first characters of the secret, to recognise it in a list.
    prefix: str
    owner_id: str
    created_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewApiToken:
    """A token just created: `token` is the secret, shown this once."""

    token: str
    api_token: ApiToken


@dataclass(frozen=True)
class ConnectedWorker:
    id: str
    name: str
    task_types: tuple[str, ...]
    slots: int
    busy_slots: int
    owner_id: str
    connected_at: datetime | None


@dataclass(frozen=True)
class Health:
    # "SERVING" or "NOT_SERVING".
    status: str
    version: str
    uptime_seconds: int
    metadata: dict[str, str]


def to_jsonable(value: Any) -> Any:
    """`value` (any of the above, or containers of them) as what `json.dumps`
    takes: dataclasses become objects, times ISO 8601 strings, enums their
    names."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value
