"""`client.tasks`: TaskService."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import field_mask_pb2

from orchestrator.client import _convert
from orchestrator.client._streams import TaskStream
from orchestrator.client._transport import Transport
from orchestrator.client._values import Page, RatePeriod, Task, TaskSpec
from orchestrator.model import ConcurrencyStrategy, TaskStatus
from orchestrator.proto import tasks_pb2

# UpdateTask's fields, by their keyword here.
_UPDATABLE = ("title", "description", "labels", "priority", "max_attempts", "timeout_seconds")


class Tasks:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(
        self,
        type: str,
        input: Mapping[str, Any] | None = None,
        *,
        title: str = "",
        start: bool = False,
        description: str = "",
        labels: Mapping[str, str] | None = None,
        priority: int = 0,
        max_attempts: int = 0,
        timeout_seconds: int = 0,
        idempotency_key: str | None = None,
        not_before: datetime | None = None,
        delay: timedelta | float | None = None,
        concurrency_key: str = "",
        concurrency_limit: int = 0,
        concurrency_strategy: ConcurrencyStrategy | None = None,
        rate_limit_bucket: str = "",
        rate_limit: int = 0,
        rate_limit_period: RatePeriod | None = None,
    ) -> Task:
        """A new task of `type`, PENDING (or QUEUED with `start=True`).

        `not_before` (a naive time is local) or `delay` (seconds or a
        timedelta): it starts no earlier, QUEUED until then. At most
        `concurrency_limit` of your tasks with `concurrency_key` run at once;
        at most `rate_limit` of those naming `rate_limit_bucket` start per
        `rate_limit_period` ("second", "minute" or "hour").

        Without an `idempotency_key` one is made up, so that a create the
        client retries after a lost reply cannot make two tasks."""
        spec = TaskSpec(
            type,
            input,
            title=title,
            start=start,
            description=description,
            labels=labels,
            priority=priority,
            max_attempts=max_attempts,
            timeout_seconds=timeout_seconds,
            idempotency_key=idempotency_key,
            not_before=not_before,
            delay=delay,
            concurrency_key=concurrency_key,
            concurrency_limit=concurrency_limit,
            concurrency_strategy=concurrency_strategy,
            rate_limit_bucket=rate_limit_bucket,
            rate_limit=rate_limit,
            rate_limit_period=rate_limit_period,
        )
        request = _create_request(spec, "input")
        reply = await self._transport.unary(lambda s: s.tasks.CreateTask, request, idempotent=True)
        return _convert.task(reply)

    async def create_many(self, specs: Iterable[TaskSpec]) -> list[Task]:
        """Up to 1,000 tasks in one call and one transaction, in order. One
        invalid spec refuses them all (InvalidArgument names `tasks[i]…`)."""
        request = tasks_pb2.CreateTasksRequest(
            tasks=[_create_request(spec, f"tasks[{i}].input") for i, spec in enumerate(specs)]
        )
        reply = await self._transport.unary(lambda s: s.tasks.CreateTasks, request, idempotent=True)
        return [_convert.task(t) for t in reply.tasks]

    async def start(self, task_id: str) -> Task:
        """Queue a PENDING task (one already queued or running is left as it is)."""
        request = tasks_pb2.StartTaskRequest(id=task_id)
        reply = await self._transport.unary(lambda s: s.tasks.StartTask, request, idempotent=True)
        return _convert.task(reply)

    async def get(self, task_id: str) -> Task:
        request = tasks_pb2.GetTaskRequest(id=task_id)
        reply = await self._transport.unary(lambda s: s.tasks.GetTask, request, idempotent=True)
        return _convert.task(reply)

    async def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        type: str = "",
        label: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Task]:
        """One page, newest first; `label` is "key=value"."""
        request = tasks_pb2.ListTasksRequest(
            page_size=page_size,
            page_token=page_token,
            status=tasks_pb2.TaskStatus.Value(f"TASK_STATUS_{TaskStatus(status).value}")
            if status
            else tasks_pb2.TASK_STATUS_UNSPECIFIED,
            type=type,
            label=label,
        )
        reply = await self._transport.unary(lambda s: s.tasks.ListTasks, request, idempotent=True)
        return Page(tuple(_convert.task(t) for t in reply.tasks), reply.next_page_token)

    async def list_all(
        self, *, status: TaskStatus | str | None = None, type: str = "", label: str = ""
    ) -> AsyncIterator[Task]:
        """Every task the caller may see, page after page."""
        token = ""
        while True:
            page = await self.list(
                status=status, type=type, label=label, page_size=500, page_token=token
            )
            for task in page.items:
                yield task
            token = page.next_page_token
            if not token:
                return

    async def update(
        self, task_id: str, *, input: Mapping[str, Any] | None = None, **fields: Any
    ) -> Task:
        """Change the given fields (title, description, labels, priority,
        max_attempts, timeout_seconds, input) where the task's state allows."""
        unknown = sorted(set(fields) - set(_UPDATABLE))
        if unknown:
            raise TypeError(f"update() got unexpected fields: {', '.join(unknown)}")
        task = tasks_pb2.Task(id=task_id, **fields)
        paths = sorted(fields)
        if input is not None:
            task.input.CopyFrom(_convert.struct(input, "task.input"))
            paths.append("input")
        request = tasks_pb2.UpdateTaskRequest(
            task=task, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
        reply = await self._transport.unary(lambda s: s.tasks.UpdateTask, request, idempotent=False)
        return _convert.task(reply)

    async def delete(self, task_id: str) -> None:
        request = tasks_pb2.DeleteTaskRequest(id=task_id)
        await self._transport.unary(lambda s: s.tasks.DeleteTask, request, idempotent=False)

    async def cancel(self, task_id: str, reason: str = "") -> Task:
        request = tasks_pb2.CancelTaskRequest(id=task_id, reason=reason)
        reply = await self._transport.unary(lambda s: s.tasks.CancelTask, request, idempotent=False)
        return _convert.task(reply)

    def execute(self, task_id: str) -> TaskStream:
        """Queue the task (a finished one runs again) and follow this
        execution to its end. Leaving the loop does not cancel the task."""
        return TaskStream(self._transport, task_id, execute=True)

    def watch(self, task_id: str, after_sequence: int = 0) -> TaskStream:
        """The task's events after `after_sequence`, then live ones, until
        the task is finished; resumed from the last one seen if the
        connection drops."""
        return TaskStream(self._transport, task_id, after_sequence)

    async def wait(self, task_id: str) -> Task:
        """The task once it is finished."""
        task = await self.get(task_id)
        if task.finished:
            return task
        async with self.watch(task_id, task.last_sequence) as events:
            async for _ in events:
                pass
        return await self.get(task_id)

    async def run(self, type: str, input: Mapping[str, Any] | None = None, **create: Any) -> Task:
        """Create a task, queue it and wait for its end: the finished task,
        output or error included (a failed task is not an exception)."""
        task = await self.create(type, input, start=True, **create)
        return await self.wait(task.id)


def _create_request(spec: TaskSpec, input_field: str) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(
        title=spec.title,
        type=spec.type,
        input=_convert.struct(spec.input, input_field),
        start=spec.start,
        description=spec.description,
        labels=dict(spec.labels or {}),
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout_seconds=spec.timeout_seconds,
        idempotency_key=spec.idempotency_key or f"client-{uuid.uuid4()}",
        not_before=_convert.timestamp(spec.not_before) if spec.not_before else None,
        delay=_convert.duration(spec.delay) if spec.delay is not None else None,
        concurrency_key=spec.concurrency_key,
        concurrency_limit=spec.concurrency_limit,
        concurrency_strategy=_convert.strategy_message(spec.concurrency_strategy),
        rate_limit_bucket=spec.rate_limit_bucket,
        rate_limit=spec.rate_limit,
        rate_limit_period=_convert.rate_period_message(spec.rate_limit_period),
    )
