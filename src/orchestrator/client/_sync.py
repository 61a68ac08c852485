"""A small blocking facade over `Client`, for scripts without asyncio. It
runs the async client on an event loop of its own, so it must not be used
from inside a running loop (use `Client` there)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from orchestrator.client._client import Client
from orchestrator.client._session import Session, SessionFile
from orchestrator.client._status import ServerStatus
from orchestrator.client._streams import RunStream, TaskStream
from orchestrator.client._values import (
    Fire,
    Page,
    Schedule,
    Task,
    TaskEvent,
    WhoAmI,
    WorkflowEvent,
    WorkflowRun,
)

T = TypeVar("T")


class SyncClient:
    """The common calls, blocking:

        with SyncClient.from_env() as client:
            task = client.run_task("echo", {"greeting": "hi"})
            print(task.status, task.output)

    `client.run(client.aio.workflows.list())` reaches anything else.
    """

    def __init__(self, url: str | None = None, **options: Any) -> None:
        """Takes what `Client` takes."""
        self._runner = asyncio.Runner()
        self.aio: Client = self.run(_build(lambda: Client(url, **options)))

    @classmethod
    def from_env(
        cls, url: str | None = None, *, session_file: SessionFile | None = None
    ) -> SyncClient:
        """Where and who as the CLI decides (see `Client.from_env`)."""
        client = cls.__new__(cls)
        client._runner = asyncio.Runner()
        client.aio = client.run(_build(lambda: Client.from_env(url, session_file=session_file)))
        return client

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine of `self.aio` to its end."""
        return self._runner.run(coroutine)

    def close(self) -> None:
        try:
            self.run(self.aio.close())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def login(self, username: str, password: str) -> Session:
        return self.run(self.aio.login(username, password))

    def logout(self) -> None:
        self.run(self.aio.logout())

    def whoami(self) -> WhoAmI:
        return self.run(self.aio.whoami())

    def status(self, *, oldest: int = 10) -> ServerStatus:
        return self.run(self.aio.status(oldest=oldest))

    def create_task(self, type: str, input: Mapping[str, Any] | None = None, **fields: Any) -> Task:
        return self.run(self.aio.tasks.create(type, input, **fields))

    def get_task(self, task_id: str) -> Task:
        return self.run(self.aio.tasks.get(task_id))

    def list_tasks(self, **filters: Any) -> Page[Task]:
        return self.run(self.aio.tasks.list(**filters))

    def cancel_task(self, task_id: str, reason: str = "") -> Task:
        return self.run(self.aio.tasks.cancel(task_id, reason))

    def run_task(self, type: str, input: Mapping[str, Any] | None = None, **fields: Any) -> Task:
        """Create, queue and wait: the finished task."""
        return self.run(self.aio.tasks.run(type, input, **fields))

    def watch_task(self, task_id: str, after_sequence: int = 0) -> Iterator[TaskEvent]:
        return self._iterate(self.aio.tasks.watch(task_id, after_sequence))

    def run_workflow(self, name_or_id: str, input: Mapping[str, Any] | None = None) -> WorkflowRun:
        """Start a run of the workflow with this id or name and wait: the
        finished run."""

        async def run() -> WorkflowRun:
            workflow = await self.aio.workflows.find(name_or_id)
            return await self.aio.workflows.run(workflow.id, input)

        return self.run(run())

    def get_run(self, run_id: str) -> WorkflowRun:
        return self.run(self.aio.runs.get(run_id))

    def watch_run(self, run_id: str, after_sequence: int = 0) -> Iterator[WorkflowEvent]:
        return self._iterate(self.aio.runs.watch(run_id, after_sequence))

    def create_schedule(self, name: str, **spec: Any) -> Schedule:
        """Takes what `client.schedules.create` takes."""
        return self.run(self.aio.schedules.create(name, **spec))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self.run(self.aio.schedules.get(schedule_id))

    def pause_schedule(self, schedule_id: str, note: str = "") -> Schedule:
        return self.run(self.aio.schedules.pause(schedule_id, note))

    def resume_schedule(self, schedule_id: str, note: str = "") -> Schedule:
        return self.run(self.aio.schedules.resume(schedule_id, note))

    def trigger_schedule(self, schedule_id: str) -> Fire:
        return self.run(self.aio.schedules.trigger(schedule_id))

    def delete_schedule(self, schedule_id: str) -> None:
        self.run(self.aio.schedules.delete(schedule_id))

    def _iterate(self, stream: TaskStream | RunStream) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.run(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self.run(stream.aclose())


async def _build(make: Callable[[], Client]) -> Client:
    # grpc.aio channels belong to the loop they are made on: make it there.
    return make()
