"""orchestrator.status.StatusService: what the server is doing, for admins."""

from __future__ import annotations

from typing import Any

from grpc import aio

from orchestrator.auth import identity
from orchestrator.engine.status import (
    DEFAULT_OLDEST,
    MAX_OLDEST,
    ConnectedWorker,
    StatusReader,
    WaitingTask,
)
from orchestrator.errors import InvalidArgument
from orchestrator.proto import status_pb2, status_pb2_grpc, tasks_pb2, workers_pb2
from orchestrator.services.convert import timestamp, wire_enum
from orchestrator.store.status import ConnectedReplica, QueueDepth

Context = aio.ServicerContext[Any, Any]


class StatusService(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: Context
    ) -> status_pb2.Status:
        identity.require_admin()
        limit = request.oldest_limit or DEFAULT_OLDEST
        if not 1 <= limit <= MAX_OLDEST:
            raise InvalidArgument.field(
                "oldest_limit", f"must be from 1 to {MAX_OLDEST}, or 0 for {DEFAULT_OLDEST}"
            )
        status = await self._reader.read(limit)
        return status_pb2.Status(
            version=status.version,
            uptime_seconds=status.uptime_seconds,
            replica_id=status.replica_id,
            database_dialect=status.database_dialect,
            replicas=[_replica(r) for r in status.replicas],
            workers=[_worker(w) for w in status.workers],
            queues=[_queue(q) for q in status.queues],
            oldest_waiting=[_waiting(w) for w in status.oldest_waiting],
            read_at=timestamp(status.read_at),
        )


def _replica(replica: ConnectedReplica) -> status_pb2.Replica:
    return status_pb2.Replica(
        id=replica.id,
        connected_since=timestamp(replica.connected_since),
        connections=replica.connections,
    )


def _worker(worker: ConnectedWorker) -> workers_pb2.Worker:
    return workers_pb2.Worker(
        id=worker.id,
        name=worker.name,
        task_types=worker.task_types,
        slots=worker.slots,
        busy_slots=worker.in_use,
        connected_at=timestamp(worker.connected_at),
        owner_id=worker.owner_id,
    )


def _queue(queue: QueueDepth) -> status_pb2.Queue:
    return status_pb2.Queue(
        type=queue.type,
        queued=queue.queued,
        not_due=queue.not_due,
        oldest_queued_at=timestamp(queue.oldest_queued_at),
    )


def _waiting(waiting: WaitingTask) -> status_pb2.WaitingTask:
    task = waiting.task
    return status_pb2.WaitingTask(
        id=task.id,
        type=task.type,
        title=task.title,
        owner_id=task.owner_id,
        created_at=timestamp(task.created_at),
        queued_at=timestamp(waiting.queued_at),
        wait_reason=wire_enum(tasks_pb2.TaskWaitReason, waiting.reason),
        waiting=waiting.waiting,
    )
