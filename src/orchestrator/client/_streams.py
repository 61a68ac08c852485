"""Event streams that survive the connection: when a stream drops, it is
reopened with WatchTask / WatchWorkflowRun from the last sequence seen, so
the caller sees every event once, in order, across a server restart.

Ending a stream (or leaving the loop) never cancels the work: streams are
views (DESIGN §5).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, Generic, Self, TypeVar

import grpc
from grpc import aio

from orchestrator.client import _convert
from orchestrator.client._retry import Attempts
from orchestrator.client._transport import Metadata, Stubs, Transport, call_metadata
from orchestrator.client._values import TaskEvent, WorkflowEvent
from orchestrator.errors import Unavailable
from orchestrator.model import RunStatus
from orchestrator.proto import tasks_pb2, workflows_pb2

log = logging.getLogger("orchestrator.client")

M = TypeVar("M")
E = TypeVar("E", TaskEvent, WorkflowEvent)
Opener = Callable[[Stubs, Metadata], aio.UnaryStreamCall[Any, M]]


class _EventStream(Generic[M, E]):
    """The events after `after_sequence`. A first call other than a watch
    (ExecuteTask, ExecuteWorkflow) is made once: if it drops before its first
    event, there is no telling what it did, and the error is raised."""

    def __init__(
        self, transport: Transport, after_sequence: int, first_call: Opener[M] | None
    ) -> None:
        self._transport = transport
        self._first_call = first_call
        self.last_sequence = after_sequence
        # How many times the stream was reopened after a drop.
        self.reconnects = 0
        self._events: AsyncGenerator[E, None] = self._follow()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> E:
        return await anext(self._events)

    async def aclose(self) -> None:
        """Stop following (the work goes on)."""
        await self._events.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- what differs between tasks and runs ---------------------------------

    def _watch(self, stubs: Stubs, metadata: Metadata) -> aio.UnaryStreamCall[Any, M]:
        raise NotImplementedError

    def _convert(self, message: M) -> E:
        raise NotImplementedError

    def _ends(self, event: E) -> bool:
        """Whether nothing more is wanted after `event`."""
        raise NotImplementedError

    async def _finished(self) -> bool:
        """Whether the server has nothing after `last_sequence`, ever."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------

    async def _follow(self) -> AsyncGenerator[E, None]:
        attempts = self._transport.stream_retry.start()
        renewed = False
        ended = False
        # Since a drop, until the server answers again.
        lost = False
        while True:
            token: str | None = None
            stubs = self._transport.stubs
            call: aio.UnaryStreamCall[Any, M] | None = None
            try:
                # Also covers a watch asked to start past the end, which the
                # server would otherwise hold open for a finished task.
                if self._first_call is None and self.last_sequence > 0:
                    finished = await self._finished()
                    lost = _resumed(lost, attempts)
                    if finished:
                        return
                token = await self._transport.bearer()
                call = self._open(stubs, token)
                async for message in call:
                    lost = _resumed(lost, attempts)
                    if ended:
                        return  # more than was wanted: the call is cancelled below
                    event = self._convert(message)
                    if event.sequence <= self.last_sequence:
                        continue  # already delivered before the drop
                    self.last_sequence = event.sequence
                    self._first_call = None
                    renewed = False
                    attempts.reset()
                    yield event
                    # Read on to the server's own end of the stream (it comes
                    # next) rather than cancel a call that is finishing.
                    ended = self._ends(event)
                return
            except (aio.AioRpcError, Unavailable) as exc:
                if ended:
                    return
                if _code(exc) == grpc.StatusCode.UNAUTHENTICATED and not renewed:
                    renewed = await self._transport.renew(token)
                    if renewed:
                        continue
                await self._pause_or_raise(exc, stubs, attempts)
                lost = True
            finally:
                if call is not None:
                    call.cancel()

    def _open(self, stubs: Stubs, token: str | None) -> aio.UnaryStreamCall[Any, M]:
        metadata = call_metadata(token)
        if self._first_call is not None:
            return self._first_call(stubs, metadata)
        return self._watch(stubs, metadata)

    async def _pause_or_raise(
        self, exc: aio.AioRpcError | Unavailable, stubs: Stubs, attempts: Attempts
    ) -> None:
        """Wait before reconnecting after a drop; raise what cannot be retried:
        another failure, a first call that never said what it did, or a
        server gone for longer than the retry policy waits."""
        if _code(exc) != grpc.StatusCode.UNAVAILABLE or self._first_call is not None:
            raise self._error(exc) from None
        self._transport.reconnect(stubs)
        delay = attempts.next_delay()
        if delay is None:
            raise self._error(exc) from None
        reason = exc.details() if isinstance(exc, aio.AioRpcError) else exc.message
        # The extra fields let a program (the CLI) show the outage its own way.
        log.warning(
            "stream lost after sequence %d (%s); reconnecting in %.2fs",
            self.last_sequence,
            reason,
            delay,
            extra={"reconnect_attempt": attempts.failures, "reason": reason},
        )
        self.reconnects += 1
        await asyncio.sleep(delay)

    def _error(self, exc: aio.AioRpcError | Unavailable) -> Exception:
        return self._transport.error(exc) if isinstance(exc, aio.AioRpcError) else exc


def _resumed(lost: bool, attempts: Attempts) -> bool:
    """Says the server answers again after a drop; whether it is still lost
    (no longer)."""
    if lost:
        log.info(
            "stream resumed after %d reconnect attempts",
            attempts.failures,
            extra={"resumed_after": attempts.failures},
        )
    return False


def _code(exc: aio.AioRpcError | Unavailable) -> grpc.StatusCode:
    return exc.code() if isinstance(exc, aio.AioRpcError) else exc.grpc_code


class TaskStream(_EventStream[tasks_pb2.TaskEvent, TaskEvent]):
    """A task's events: `async for event in stream`. `last_sequence` is the
    last one delivered; pass it as `after_sequence` to pick up later."""

    def __init__(
        self,
        transport: Transport,
        task_id: str,
        after_sequence: int = 0,
        *,
        execute: bool = False,
    ) -> None:
        self.task_id = task_id
        self._one_execution = execute
        request = tasks_pb2.ExecuteTaskRequest(id=task_id)

        def execute_task(
            stubs: Stubs, metadata: Metadata
        ) -> aio.UnaryStreamCall[Any, tasks_pb2.TaskEvent]:
            return stubs.tasks.ExecuteTask(request, metadata=metadata)

        super().__init__(transport, after_sequence, execute_task if execute else None)

    def _watch(
        self, stubs: Stubs, metadata: Metadata
    ) -> aio.UnaryStreamCall[Any, tasks_pb2.TaskEvent]:
        request = tasks_pb2.WatchTaskRequest(id=self.task_id, after_sequence=self.last_sequence)
        return stubs.tasks.WatchTask(request, metadata=metadata)

    def _convert(self, message: tasks_pb2.TaskEvent) -> TaskEvent:
        return _convert.task_event(message)

    def _ends(self, event: TaskEvent) -> bool:
        # An execution ends with its first ending event; a watch when the
        # server says so (a retried task goes on after a FAILED attempt).
        return self._one_execution and event.ends_execution

    async def _finished(self) -> bool:
        task = await self._transport.unary(
            lambda s: s.tasks.GetTask, tasks_pb2.GetTaskRequest(id=self.task_id), idempotent=False
        )
        terminal = _convert.task_status(task.status).terminal
        return terminal and task.last_sequence <= self.last_sequence


class RunStream(_EventStream[workflows_pb2.WorkflowEvent, WorkflowEvent]):
    """A workflow run's events. `run_id` is known from the first event on
    when the stream started the run."""

    def __init__(
        self,
        transport: Transport,
        run_id: str = "",
        after_sequence: int = 0,
        *,
        start: workflows_pb2.ExecuteWorkflowRequest | None = None,
    ) -> None:
        self.run_id = run_id

        def execute_workflow(
            stubs: Stubs, metadata: Metadata
        ) -> aio.UnaryStreamCall[Any, workflows_pb2.WorkflowEvent]:
            assert start is not None
            return stubs.workflows.ExecuteWorkflow(start, metadata=metadata)

        super().__init__(transport, after_sequence, execute_workflow if start is not None else None)

    def _watch(
        self, stubs: Stubs, metadata: Metadata
    ) -> aio.UnaryStreamCall[Any, workflows_pb2.WorkflowEvent]:
        request = workflows_pb2.WatchWorkflowRunRequest(
            id=self.run_id, after_sequence=self.last_sequence
        )
        return stubs.workflows.WatchWorkflowRun(request, metadata=metadata)

    def _convert(self, message: workflows_pb2.WorkflowEvent) -> WorkflowEvent:
        event = _convert.run_event(message)
        self.run_id = self.run_id or event.run_id
        return event

    def _ends(self, event: WorkflowEvent) -> bool:
        return event.ends_run

    async def _finished(self) -> bool:
        run = await self._transport.unary(
            lambda s: s.workflows.GetWorkflowRun,
            workflows_pb2.GetWorkflowRunRequest(id=self.run_id),
            idempotent=False,
        )
        running = _convert.run_status(run.status) is RunStatus.RUNNING
        return not running and run.last_sequence <= self.last_sequence
