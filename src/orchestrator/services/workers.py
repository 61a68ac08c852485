"""orchestrator.workers.WorkerService: the worker stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from orchestrator import logs
from orchestrator.auth import identity
from orchestrator.channel import MAX_MESSAGE_BYTES
from orchestrator.engine.dispatch import (
    Assign,
    Cancel,
    Dispatcher,
    Drain,
    Outbound,
    Reject,
    Revoked,
    WorkerSession,
)
from orchestrator.engine.reports import (
    Complete,
    Fail,
    Heartbeat,
    LogLine,
    Progress,
    Release,
    Report,
)
from orchestrator.errors import InvalidArgument, Unauthenticated
from orchestrator.proto import workers_pb2, workers_pb2_grpc
from orchestrator.services.convert import from_struct, struct, timestamp

log = logging.getLogger(__name__)

Context = aio.ServicerContext[Any, Any]
HELLO_TIMEOUT_SECONDS = 30.0


def _report(message: workers_pb2.WorkerMessage) -> Report | None:
    match message.WhichOneof("kind"):
        case "heartbeat":
            return Heartbeat()
        case "progress":
            p = message.progress
            return Progress(p.task_id, p.fencing_token, p.percent, p.message)
        case "log":
            return LogLine(message.log.task_id, message.log.fencing_token, message.log.line)
        case "complete":
            c = message.complete
            return Complete(c.task_id, c.fencing_token, from_struct(c.output))
        case "fail":
            f = message.fail
            return Fail(f.task_id, f.fencing_token, f.error, f.permanent)
        case "release":
            return Release(message.release.task_id, message.release.fencing_token)
    return None


def _outbound(item: Outbound) -> workers_pb2.ServerMessage:
    match item:
        case Assign(task):
            return workers_pb2.ServerMessage(
                assignment=workers_pb2.Assignment(
                    task_id=task.id,
                    fencing_token=task.fencing_token,
                    type=task.type,
                    input=struct(task.input),
                    attempt=task.attempt,
                    max_attempts=task.max_attempts,
                    timeout_seconds=task.timeout_seconds,
                    lease_expires_at=timestamp(task.lease_expires_at),
                    title=task.title,
                    labels=task.labels,
                    traceparent=task.trace_context or "",
                )
            )
        case Cancel(task_id, fencing_token, reason):
            return workers_pb2.ServerMessage(
                cancel=workers_pb2.CancelAssignment(
                    task_id=task_id, fencing_token=fencing_token, reason=reason
                )
            )
        case Reject(task_id, fencing_token, reason):
            return workers_pb2.ServerMessage(
                rejection=workers_pb2.Rejection(
                    task_id=task_id,
                    fencing_token=fencing_token,
                    code="FAILED_PRECONDITION",
                    message=reason,
                )
            )
        case Drain(reason):
            return workers_pb2.ServerMessage(drain=workers_pb2.Drain(reason=reason))
        case Revoked():
            raise Unauthenticated("credentials revoked: connect again with a valid token")
    raise AssertionError(f"unexpected outbound item {item!r}")


class WorkerService(workers_pb2_grpc.WorkerServiceServicer):
    def __init__(
        self, dispatcher: Dispatcher, heartbeat_seconds: float, lease_seconds: float
    ) -> None:
        self._dispatcher = dispatcher
        self._heartbeat_seconds = heartbeat_seconds
        self._lease_seconds = lease_seconds

    async def Connect(
        self, request_iterator: AsyncIterator[workers_pb2.WorkerMessage], context: Context
    ) -> AsyncIterator[workers_pb2.ServerMessage]:
        caller = identity.current()
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_SECONDS)
        except (StopAsyncIteration, TimeoutError):
            raise InvalidArgument.field("hello", "send a hello first") from None
        if first.WhichOneof("kind") != "hello":
            raise InvalidArgument.field("hello", "the first message must be a hello")
        hello = first.hello
        session = self._dispatcher.register(caller, hello.name, list(hello.task_types), hello.slots)
        with logs.bound(worker_id=session.id):  # what the session's own tasks log
            reader = asyncio.create_task(
                self._read(session, request_iterator), name=f"worker-reader-{session.id}"
            )
            applier = asyncio.create_task(self._apply(session), name=f"worker-reports-{session.id}")
        try:
            yield workers_pb2.ServerMessage(
                welcome=workers_pb2.Welcome(
                    worker_id=session.id,
                    # Rounded down: a worker must never beat less often than asked.
                    heartbeat_interval_seconds=max(1, int(self._heartbeat_seconds)),
                    lease_seconds=round(self._lease_seconds),
                    # So the worker fails an output the server would refuse
                    # instead of sending it (an oversized message ends the stream).
                    max_payload_bytes=self._dispatcher.attempts.rules.max_payload_bytes,
                    max_message_bytes=MAX_MESSAGE_BYTES,
                )
            )
            while (item := await session.outbound.get()) is not None:
                yield _outbound(item)
        finally:
            for task in (reader, applier):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(reader, applier)
            # Shielded: the tasks must go back to the queue even if this call
            # is being cancelled (the worker vanished).
            await asyncio.shield(self._dispatcher.unregister(session))

    async def _read(
        self, session: WorkerSession, messages: AsyncIterator[workers_pb2.WorkerMessage]
    ) -> None:
        """Worker messages into the session's inbox; None once the worker is done."""
        try:
            async for message in messages:
                if (report := _report(message)) is not None:
                    await session.inbox.put(report)
        except aio.AioRpcError:
            pass  # the worker went away
        except Exception:
            log.exception("worker stream failed", extra={"worker_id": session.id})
        await session.inbox.put(None)

    async def _apply(self, session: WorkerSession) -> None:
        try:
            await self._dispatcher.serve(session)
        except Exception:
            log.exception("worker reports failed", extra={"worker_id": session.id})
        finally:
            session.outbound.put_nowait(None)

    async def ListWorkers(
        self, request: workers_pb2.ListWorkersRequest, context: Context
    ) -> workers_pb2.ListWorkersResponse:
        caller = identity.current()
        return workers_pb2.ListWorkersResponse(
            workers=[
                workers_pb2.Worker(
                    id=s.id,
                    name=s.name,
                    task_types=s.task_types,
                    slots=s.slots,
                    busy_slots=len(s.in_flight),
                    connected_at=timestamp(s.connected_at),
                    owner_id=s.identity.user_id,
                )
                for s in self._dispatcher.sessions
                if caller.is_admin or s.identity.user_id == caller.user_id
            ]
        )
