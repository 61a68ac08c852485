"""One connection: the Connect stream from hello to close, and the handlers
running on its assignments.

Every report names its attempt by fencing token, so a report from a stream
that has gone is refused by the server anyway: when the stream breaks the
session cancels its handlers rather than let them work for nothing.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from grpc import aio
from opentelemetry import trace

from orchestrator import logs, tracing
from orchestrator.proto import workers_pb2
from orchestrator.structs import to_dict
from orchestrator.worker._context import TaskContext
from orchestrator.worker._handlers import OutputLimits, Registration, attempt, failure, release
from orchestrator.worker._outbox import Outbox
from orchestrator.worker._stop import StopRequest, first_of

log = logging.getLogger("orchestrator.worker")
# The application's tracer provider once it sets one; a no-op until then.
_tracer = trace.get_tracer("orchestrator.worker")

Call = aio.StreamStreamCall[workers_pb2.WorkerMessage, workers_pb2.ServerMessage]

DEFAULT_HEARTBEAT_SECONDS = 10
# After the worker half-closes, the server should end the stream promptly;
# past this the worker stops waiting and cancels the call.
CLOSE_TIMEOUT_SECONDS = 5.0
# How long cancelled handlers get to run their cleanup before the session
# gives up on them.
UNWIND_SECONDS = 2.0


class Outcome(enum.Enum):
    STOPPED = "stopped"  # a stop was requested: do not reconnect
    DRAINED = "drained"  # the server asked the worker to go: reconnect
    LOST = "lost"  # the stream broke or ended unasked: reconnect


class ProtocolError(Exception):
    """The server said something out of turn."""


@dataclass(frozen=True)
class _Held:
    ctx: TaskContext
    task: asyncio.Task[None]


class Session:
    def __init__(
        self,
        call: Call,
        *,
        url: str,
        hello: workers_pb2.Hello,
        registrations: Mapping[str, Registration],
        stop: StopRequest,
    ) -> None:
        self._call = call
        self._url = url
        self._hello = hello
        self._registrations = registrations
        self._stop = stop
        self._outbox = Outbox()
        # The attempts that occupy a slot; cancelled ones leave at once, as
        # the server frees their slot at once.
        self._held: dict[str, _Held] = {}
        # Every handler task not yet finished, cancelled ones included.
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._drain = asyncio.Event()
        self._written = asyncio.Event()
        self._accepting = True
        self._limits = OutputLimits()

    async def handshake(self) -> workers_pb2.Welcome:
        """Say hello and return the welcome; AioRpcError if the server
        refuses, ProtocolError if it answers out of turn."""
        try:
            await self._call.write(workers_pb2.WorkerMessage(hello=self._hello))
        except asyncio.InvalidStateError:
            pass  # the call has already ended: reading tells why
        first = await self._call.read()
        if not isinstance(first, workers_pb2.ServerMessage):
            raise ProtocolError("the server ended the stream before welcoming the worker")
        if first.WhichOneof("kind") != "welcome":
            raise ProtocolError(f"expected a welcome, got {first.WhichOneof('kind')}")
        return first.welcome

    async def serve(self, welcome: workers_pb2.Welcome) -> Outcome:
        self._limits = OutputLimits.of(welcome)
        interval = welcome.heartbeat_interval_seconds or DEFAULT_HEARTBEAT_SECONDS
        if welcome.lease_seconds and interval >= welcome.lease_seconds:
            log.warning(
                "heartbeat interval (%ss) is not shorter than the lease (%ss): leases may lapse",
                interval,
                welcome.lease_seconds,
            )
        background = [
            asyncio.create_task(self._write(), name="orchestrator-worker-writer"),
            asyncio.create_task(self._beat(interval), name="orchestrator-worker-heartbeat"),
            asyncio.create_task(self._wind_down(), name="orchestrator-worker-wind-down"),
        ]
        try:
            await self._read()
        except aio.AioRpcError as exc:
            level = logging.DEBUG if self._written.is_set() else logging.WARNING
            log.log(
                level,
                "connection to %s lost: %s: %s",
                self._url,
                exc.code().name,
                exc.details() or "",
            )
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._abandon_all()
        if self._stop.requested:
            return Outcome.STOPPED
        return Outcome.DRAINED if self._drain.is_set() else Outcome.LOST

    async def _read(self) -> None:
        while True:
            try:
                message = await self._call.read()
            except asyncio.CancelledError:
                # _wind_down cancels a call the server did not end in time.
                task = asyncio.current_task()
                if self._call.cancelled() and task is not None and not task.cancelling():
                    return
                raise
            if not isinstance(message, workers_pb2.ServerMessage):
                if not self._written.is_set():
                    log.warning("the server at %s ended the stream", self._url)
                return
            self._dispatch(message)

    async def _write(self) -> None:
        try:
            while (message := await self._outbox.get()) is not None:
                await self._call.write(message)
            await self._call.done_writing()
        except (aio.AioRpcError, asyncio.InvalidStateError):
            return  # the stream is gone; the reader says why
        self._written.set()

    async def _beat(self, interval: float) -> None:
        heartbeat = workers_pb2.WorkerMessage(heartbeat=workers_pb2.Heartbeat())
        while not self._outbox.closed:
            await asyncio.sleep(interval)
            self._outbox.put(heartbeat, urgent=True)

    async def _wind_down(self) -> None:
        """Once draining: let handlers finish (within the grace, if a stop
        was requested), hand back the rest, half-close."""
        await first_of(self._drain.wait(), self._stop.wait())
        self._accepting = False
        log.info("draining", extra={"reason": "stop" if self._stop.requested else "server"})
        while self._held:
            if self._stop.requested:
                remaining = self._stop.remaining()
                if remaining <= 0:
                    break
                await first_of(self._idle.wait(), self._stop.wait_changed(), within=remaining)
            else:
                await first_of(self._idle.wait(), self._stop.wait())
        self._hand_back_all()
        self._outbox.close()
        await self._written.wait()
        await asyncio.sleep(CLOSE_TIMEOUT_SECONDS)
        log.warning("the server did not end the stream after the worker closed it")
        self._call.cancel()

    def _dispatch(self, message: workers_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "assignment":
            self._assign(message.assignment)
        elif kind == "cancel":
            cancel = message.cancel
            self._revoke(cancel.task_id, cancel.fencing_token)
            log.info("task %s cancelled: %s", cancel.task_id, cancel.reason or "no reason given")
        elif kind == "rejection":
            rejection = message.rejection
            self._revoke(rejection.task_id, rejection.fencing_token)
            log.warning(
                "task %s: the server refused a report (%s: %s); dropping the attempt",
                rejection.task_id,
                rejection.code,
                rejection.message,
            )
        elif kind == "drain":
            log.info("the server asks the worker to drain: %s", message.drain.reason or "")
            self._drain.set()
        else:  # a second welcome, or a kind newer than this worker
            log.warning("ignoring an unexpected message from the server: %s", kind)

    def _assign(self, assignment: workers_pb2.Assignment) -> None:
        task_id, token = assignment.task_id, assignment.fencing_token
        if not self._accepting or (
            len(self._held) >= self._hello.slots and task_id not in self._held
        ):
            why = "draining" if not self._accepting else "all slots are busy"
            log.info("task %s (%s) handed back: %s", task_id, assignment.type, why)
            self._outbox.put(release(task_id, token))
            return
        stale = self._held.get(task_id)
        if stale is not None:  # a new attempt at a task still held supersedes the old one
            self._revoke(task_id, stale.ctx.fencing_token)
        ctx = TaskContext(
            task_id=task_id,
            fencing_token=token,
            type=assignment.type,
            attempt=assignment.attempt,
            max_attempts=assignment.max_attempts,
            title=assignment.title,
            labels=assignment.labels,
            input=to_dict(assignment.input),
            outbox=self._outbox,
        )
        registration = self._registrations.get(assignment.type)
        if registration is None:
            log.warning("task %s: no handler for type %r", task_id, assignment.type)
            error = f"worker {self._hello.name!r} has no handler for type {assignment.type!r}"
            ctx._finish(failure(ctx, error, permanent=False))
            return
        task = asyncio.create_task(
            self._traced(registration, ctx, assignment.timeout_seconds, assignment.traceparent),
            name=f"orchestrator-task-{task_id}",
        )
        self._held[task_id] = _Held(ctx, task)
        self._idle.clear()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _traced(
        self, registration: Registration, ctx: TaskContext, time_limit: int, traceparent: str
    ) -> None:
        """`_run` in a span continuing the trace of the call that created
        the task, its logs carrying the task's id."""
        attributes: dict[str, str | int] = {
            "orchestrator.task.id": ctx.task_id,
            "orchestrator.task.type": ctx.type,
            "orchestrator.task.attempt": ctx.attempt,
        }
        with (
            logs.bound(task_id=ctx.task_id),
            tracing.continued(_tracer, f"run {ctx.type}", traceparent, attributes) as span,
        ):
            report = await self._run(registration, ctx, time_limit)
            if span is not None and report is not None and report.WhichOneof("kind") == "fail":
                span.set_status(trace.StatusCode.ERROR, report.fail.error)

    async def _run(
        self, registration: Registration, ctx: TaskContext, time_limit: int
    ) -> workers_pb2.WorkerMessage | None:
        """The report sent for the attempt; None when none was (it was
        cancelled or superseded)."""
        started = time.monotonic()
        log.info(
            "task %s (%s) started, attempt %d of %d",
            ctx.task_id,
            ctx.type,
            ctx.attempt,
            ctx.max_attempts,
        )
        try:
            report = await attempt(registration, ctx, time_limit, self._limits)
            if not ctx._finish(report):
                return None
            elapsed = time.monotonic() - started
            if report.WhichOneof("kind") == "complete":
                log.info("task %s (%s) succeeded in %.3fs", ctx.task_id, ctx.type, elapsed)
            else:
                log.info(
                    "task %s (%s) failed in %.3fs: %s%s",
                    ctx.task_id,
                    ctx.type,
                    elapsed,
                    report.fail.error,
                    " (permanent)" if report.fail.permanent else "",
                )
            return report
        finally:
            held = self._held.get(ctx.task_id)
            if held is not None and held.ctx is ctx:
                del self._held[ctx.task_id]
                if not self._held:
                    self._idle.set()

    def _revoke(self, task_id: str, fencing_token: int) -> None:
        """Stop an attempt and say nothing more about it."""
        held = self._held.get(task_id)
        if held is None or held.ctx.fencing_token != fencing_token:
            return
        del self._held[task_id]
        if not self._held:
            self._idle.set()
        held.ctx._cancel()
        held.task.cancel()

    def _hand_back_all(self) -> None:
        for task_id, held in list(self._held.items()):
            self._revoke(task_id, held.ctx.fencing_token)
            self._outbox.put(release(task_id, held.ctx.fencing_token))
            log.info("task %s (%s) handed back: grace period over", task_id, held.ctx.type)

    async def _abandon_all(self) -> None:
        if self._held:
            log.warning(
                "%d running task(s) abandoned with the connection; the server re-queues them",
                len(self._held),
            )
        for task_id, held in list(self._held.items()):
            self._revoke(task_id, held.ctx.fencing_token)
        if not self._tasks:
            return
        _, stuck = await asyncio.wait(set(self._tasks), timeout=UNWIND_SECONDS)
        if stuck:
            log.warning("%d handler(s) ignored cancellation; leaving them behind", len(stuck))
