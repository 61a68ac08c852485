"""Handlers by task type, how each one is called, and what its result or
exception becomes on the wire."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.channel import MAX_MESSAGE_BYTES
from orchestrator.engine.validation import payload_problem
from orchestrator.proto import workers_pb2
from orchestrator.structs import to_struct
from orchestrator.worker._context import TaskContext
from orchestrator.worker._errors import PermanentError

Handler = Callable[[TaskContext, dict[str, Any]], Any]
"""`async def f(ctx, input)` or `def f(ctx, input)`, returning a dict or None."""

log = logging.getLogger("orchestrator.worker")

HandlerT = TypeVar("HandlerT", bound=Handler)
THREAD_PREFIX = "orchestrator-task-"
T = TypeVar("T")


@dataclass(frozen=True)
class Registration:
    type: str
    handler: Handler
    is_async: bool


@dataclass(frozen=True)
class OutputLimits:
    """What the server accepts as a task's output (0: not said). An output
    over a limit fails its task here: sent, it would be refused, and one
    over the message limit would end the stream and come back for ever."""

    payload_bytes: int = 0
    message_bytes: int = MAX_MESSAGE_BYTES

    @classmethod
    def of(cls, welcome: workers_pb2.Welcome) -> OutputLimits:
        # This worker's channel sends nothing larger than MAX_MESSAGE_BYTES either.
        message_bytes = min(welcome.max_message_bytes or MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES)
        return cls(welcome.max_payload_bytes, message_bytes)

    def problem(self, output: dict[str, Any], report: workers_pb2.WorkerMessage) -> str | None:
        """Why the server would not take `report` (completing with `output`), or None."""
        if self.payload_bytes and (problem := payload_problem(output, self.payload_bytes)):
            return f"output {problem}"
        size = report.ByteSize()
        if size > self.message_bytes:
            return f"output is {size} bytes, over the limit of {self.message_bytes}"
        return None


def registration(task_type: str, handler: Handler) -> Registration:
    if not isinstance(task_type, str) or not task_type.strip():
        raise ValueError(f"a task type is a non-empty string, got {task_type!r}")
    if not callable(handler):
        raise TypeError(f"the handler for {task_type!r} is not callable: {handler!r}")
    call = getattr(handler, "__call__", None)  # noqa: B004 - objects with an async __call__
    is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)
    return Registration(task_type, handler, is_async)


async def attempt(
    registration: Registration, ctx: TaskContext, time_limit: int, limits: OutputLimits
) -> workers_pb2.WorkerMessage:
    """Run the handler (within `time_limit` seconds, if not 0) and return
    the report on how it went. CancelledError passes through only when the
    attempt itself was cancelled: whoever cancelled it decides what, if
    anything, the server hears."""
    limit = asyncio.timeout(time_limit if time_limit > 0 else None)
    try:
        async with limit:
            result = await invoke(registration, ctx)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return failure(ctx, "the handler raised CancelledError unasked", permanent=False)
    except Exception as exc:
        if isinstance(exc, TimeoutError) and limit.expired():
            ctx._flag_cancelled()  # a thread handler may still be running: tell it
            return failure(ctx, f"timed out after {time_limit}s", permanent=False)
        log.debug("task %s (%s) raised", ctx.task_id, ctx.type, exc_info=True)
        return failure_from(ctx, exc)
    return completion(ctx, result, limits)


async def invoke(registration: Registration, ctx: TaskContext) -> Any:
    if registration.is_async:
        return await registration.handler(ctx, ctx.input)
    name = f"{THREAD_PREFIX}{ctx.task_id}"
    result = await in_thread(registration.handler, ctx, ctx.input, name=name)
    if inspect.isawaitable(result):  # a plain function that hands back a coroutine
        return await result
    return result


async def in_thread(function: Callable[..., T], *args: Any, name: str) -> T:
    """`function(*args)` in a new daemon thread, awaited.

    Not `asyncio.to_thread`: its shared default executor holds only
    min(32, CPUs + 4) threads, fewer than a worker's slots on a small
    machine, and on Python 3.11 `asyncio.run` waits without limit for its
    threads at exit, so one handler ignoring cancellation would hold the
    worker's shutdown past its grace period. A daemon thread does neither;
    cancelling the await abandons the thread (Python cannot stop it) and
    the handler sees `ctx.cancelled`.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = context.run(function, *args)
        except BaseException as exc:  # handed to the awaiting task, not lost in the thread
            error = exc
            deliver = lambda: settle(lambda: future.set_exception(error))  # noqa: E731
        else:
            deliver = lambda: settle(lambda: future.set_result(result))  # noqa: E731
        try:
            loop.call_soon_threadsafe(deliver)
        except RuntimeError:
            pass  # the loop is gone: nobody is waiting any more

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


def running_threads() -> int:
    """Handler threads still running, cancelled ones included."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(THREAD_PREFIX))


def completion(ctx: TaskContext, result: Any, limits: OutputLimits) -> workers_pb2.WorkerMessage:
    """The report for a handler that returned `result`."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        return failure(
            ctx,
            f"handler for {ctx.type!r} returned a {type(result).__name__}; "
            "it must return a dict (a JSON object) or None",
            permanent=False,
        )
    try:
        output = to_struct(result)
    except ValueError as exc:
        return failure(ctx, f"handler for {ctx.type!r} returned bad output: {exc}", False)
    report = workers_pb2.WorkerMessage(
        complete=workers_pb2.TaskComplete(
            task_id=ctx.task_id, fencing_token=ctx.fencing_token, output=output
        )
    )
    if problem := limits.problem(result, report):
        return failure(ctx, problem, permanent=True)
    return report


def failure_from(ctx: TaskContext, exc: Exception) -> workers_pb2.WorkerMessage:
    """The report for a handler that raised `exc`."""
    return failure(ctx, str(exc) or type(exc).__name__, isinstance(exc, PermanentError))


def failure(ctx: TaskContext, error: str, permanent: bool) -> workers_pb2.WorkerMessage:
    return workers_pb2.WorkerMessage(
        fail=workers_pb2.TaskFail(
            task_id=ctx.task_id, fencing_token=ctx.fencing_token, error=error, permanent=permanent
        )
    )


def release(task_id: str, fencing_token: int) -> workers_pb2.WorkerMessage:
    return workers_pb2.WorkerMessage(
        release=workers_pb2.TaskRelease(task_id=task_id, fencing_token=fencing_token)
    )
