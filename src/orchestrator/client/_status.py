"""`client.status()`: what the server is doing (StatusService, admins only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from orchestrator.client import _convert
from orchestrator.client._transport import Transport
from orchestrator.client._values import ConnectedWorker
from orchestrator.model import WaitReason
from orchestrator.proto import status_pb2, tasks_pb2


@dataclass(frozen=True)
class Replica:
    id: str
    # Its earliest open database connection (SQLite: when it started).
    connected_since: datetime | None
    # Open database connections (0 on SQLite).
    connections: int


@dataclass(frozen=True)
class Queue:
    type: str
    queued: int
    # Of those, not due yet: a start time or a retry's backoff ahead.
    not_due: int
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class WaitingTask:
    id: str
    type: str
    title: str
    owner_id: str
    created_at: datetime | None
    queued_at: datetime | None
    # None: nothing holds it back (a claim is about to take it).
    wait_reason: WaitReason | None
    # Why, for people: "no connected worker serves type x".
    waiting: str


@dataclass(frozen=True)
class ServerStatus:
    version: str
    uptime_seconds: int
    # The replica that answered.
    replica_id: str
    database_dialect: str
    replicas: tuple[Replica, ...]
    # Connected to the replica that answered (each knows only its own).
    workers: tuple[ConnectedWorker, ...]
    # QUEUED tasks by type, every replica's.
    queues: tuple[Queue, ...]
    # The longest-waiting QUEUED tasks, oldest first.
    oldest_waiting: tuple[WaitingTask, ...]
    # The server's clock when this was read: ages are relative to it.
    read_at: datetime | None


async def read(transport: Transport, oldest: int) -> ServerStatus:
    request = status_pb2.GetStatusRequest(oldest_limit=oldest)
    reply = await transport.unary(lambda s: s.status.GetStatus, request, idempotent=True)
    return server_status(reply)


def server_status(message: status_pb2.Status) -> ServerStatus:
    return ServerStatus(
        version=message.version,
        uptime_seconds=message.uptime_seconds,
        replica_id=message.replica_id,
        database_dialect=message.database_dialect,
        replicas=tuple(
            Replica(r.id, _convert._time(r, "connected_since"), r.connections)
            for r in message.replicas
        ),
        workers=tuple(_convert.connected_worker(w) for w in message.workers),
        queues=tuple(
            Queue(q.type, q.queued, q.not_due, _convert._time(q, "oldest_queued_at"))
            for q in message.queues
        ),
        oldest_waiting=tuple(_waiting(w) for w in message.oldest_waiting),
        read_at=_convert._time(message, "read_at"),
    )


def _waiting(message: status_pb2.WaitingTask) -> WaitingTask:
    reason = tasks_pb2.TaskWaitReason.Name(message.wait_reason)
    return WaitingTask(
        id=message.id,
        type=message.type,
        title=message.title,
        owner_id=message.owner_id,
        created_at=_convert._time(message, "created_at"),
        queued_at=_convert._time(message, "queued_at"),
        wait_reason=_convert._enum(WaitReason, reason, "TASK_WAIT_REASON_"),
        waiting=message.waiting,
    )
