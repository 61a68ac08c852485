"""orchestrator.tasks.TaskService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from orchestrator.auth import identity
from orchestrator.engine.task_requests import label_filter
from orchestrator.engine.tasks import TaskEngine, TaskFilter
from orchestrator.engine.waiting import WaitReasons
from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import NewTask
from orchestrator.proto import tasks_pb2, tasks_pb2_grpc
from orchestrator.services.convert import from_struct
from orchestrator.services.convert_tasks import (
    event_message,
    new_task,
    status_domain,
    task_message,
)
from orchestrator.services.streams import Streams
from orchestrator.store.types import utcnow

Context = aio.ServicerContext[Any, Any]


_SCALARS = frozenset({"title", "description", "priority", "max_attempts", "timeout_seconds"})


def _field(task: tasks_pb2.Task, path: str) -> Any:
    """The value UpdateTask's mask names; None for a path the engine will
    refuse by name."""
    if path == "labels":
        return dict(task.labels)
    if path == "input":
        return from_struct(task.input)
    return getattr(task, path) if path in _SCALARS else None


class TaskService(tasks_pb2_grpc.TaskServiceServicer):
    def __init__(
        self,
        engine: TaskEngine,
        streams: Streams,
        default_max_attempts: int,
        waiting: WaitReasons,
    ) -> None:
        self._engine = engine
        self._waiting = waiting
        self._streams = streams
        self._default_max_attempts = default_max_attempts

    def _new_task(self, request: tasks_pb2.CreateTaskRequest) -> NewTask:
        return new_task(request, self._default_max_attempts, utcnow())

    async def CreateTask(
        self, request: tasks_pb2.CreateTaskRequest, context: Context
    ) -> tasks_pb2.Task:
        task = await self._engine.create(identity.current(), self._new_task(request))
        return task_message(task)

    async def CreateTasks(
        self, request: tasks_pb2.CreateTasksRequest, context: Context
    ) -> tasks_pb2.CreateTasksResponse:
        news: list[NewTask] = []
        problems: list[FieldViolation] = []
        for index, item in enumerate(request.tasks):
            try:
                news.append(self._new_task(item))
            except InvalidArgument as invalid:
                problems += invalid.under(f"tasks[{index}].").violations
        if problems:
            raise InvalidArgument(violations=problems)
        created = await self._engine.create_many(identity.current(), news)
        return tasks_pb2.CreateTasksResponse(tasks=[task_message(t) for t in created])

    async def StartTask(
        self, request: tasks_pb2.StartTaskRequest, context: Context
    ) -> tasks_pb2.Task:
        return task_message(await self._engine.start(identity.current(), request.id))

    async def GetTask(self, request: tasks_pb2.GetTaskRequest, context: Context) -> tasks_pb2.Task:
        task = await self._engine.get(identity.current(), request.id)
        return task_message(task, await self._waiting.of(task))

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        where = TaskFilter(
            status=status_domain(request.status),
            type=request.type or None,
            label=label_filter(request.label),
        )
        found, token = await self._engine.list(
            identity.current(), where, request.page_size, request.page_token
        )
        return tasks_pb2.ListTasksResponse(
            tasks=[task_message(t) for t in found], next_page_token=token
        )

    async def UpdateTask(
        self, request: tasks_pb2.UpdateTaskRequest, context: Context
    ) -> tasks_pb2.Task:
        given = request.task
        changes = {path: _field(given, path) for path in request.update_mask.paths}
        updated = await self._engine.update(identity.current(), given.id, changes)
        return task_message(updated)

    async def DeleteTask(
        self, request: tasks_pb2.DeleteTaskRequest, context: Context
    ) -> tasks_pb2.DeleteTaskResponse:
        await self._engine.delete(identity.current(), request.id)
        return tasks_pb2.DeleteTaskResponse()

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.Task:
        return task_message(
            await self._engine.cancel(identity.current(), request.id, request.reason)
        )

    async def ExecuteTask(
        self, request: tasks_pb2.ExecuteTaskRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.TaskEvent]:
        caller = identity.current()
        after = await self._engine.execute(caller, request.id)
        events = self._engine.follow(caller, request.id, after, one_execution=True)
        async for event in self._streams.guard(caller, events):
            yield event_message(event)

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.TaskEvent]:
        caller = identity.current()
        events = self._engine.follow(
            caller, request.id, request.after_sequence, one_execution=False
        )
        async for event in self._streams.guard(caller, events):
            yield event_message(event)
