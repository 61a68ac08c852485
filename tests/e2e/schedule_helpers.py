"""Helpers for the end-to-end tests of schedules: a ScheduleService client
with the caller's token on every call, task templates labelled with their
schedule's name (so its tasks can be listed by label), and reading back what
a schedule fired.

    schedules = Schedules(admin)
    schedule = await schedules.create(interval_seconds=1, task=template("echo"))
    tasks = await fired_tasks(admin, schedule)
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from orchestrator.proto import schedules_pb2, schedules_pb2_grpc, tasks_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, to_struct

SKIP = schedules_pb2.OVERLAP_POLICY_SKIP
ALLOW_ALL = schedules_pb2.OVERLAP_POLICY_ALLOW_ALL
# What a schedule's task carries so the test can find them: its schedule's name.
LABEL = "schedule"


def unique_name(prefix: str = "sched") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def template(
    type: str = "echo", input: Mapping[str, Any] | None = None, **fields: Any
) -> tasks_pb2.CreateTaskRequest:
    return tasks_pb2.CreateTaskRequest(type=type, input=to_struct(input or {}), **fields)


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def when(message: timestamp_pb2.Timestamp) -> datetime:
    return message.ToDatetime(tzinfo=UTC)


def steps(times: list[datetime]) -> list[timedelta]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


class Schedules:
    """ScheduleService for one user (a conftest Client), with deadlines."""

    def __init__(self, client: Client) -> None:
        self.metadata = client.metadata
        self.stub = schedules_pb2_grpc.ScheduleServiceStub(client.channel)

    @staticmethod
    def request(name: str = "", **fields: Any) -> schedules_pb2.CreateScheduleRequest:
        """A CreateScheduleRequest; a copy of the task template labelled with
        the name."""
        name = name or unique_name()
        if (task := fields.get("task")) is not None:
            labelled = tasks_pb2.CreateTaskRequest()
            labelled.CopyFrom(task)
            labelled.labels[LABEL] = name
            fields = {**fields, "task": labelled}
        return schedules_pb2.CreateScheduleRequest(name=name, **fields)

    async def create(self, name: str = "", **fields: Any) -> schedules_pb2.Schedule:
        return await self.stub.CreateSchedule(
            self.request(name, **fields), metadata=self.metadata, timeout=CALL_TIMEOUT
        )

    async def get(self, schedule_id: str) -> schedules_pb2.Schedule:
        return await self.stub.GetSchedule(
            schedules_pb2.GetScheduleRequest(id=schedule_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def list(self, page_size: int = 0, page_token: str = "") -> Any:
        return await self.stub.ListSchedules(
            schedules_pb2.ListSchedulesRequest(page_size=page_size, page_token=page_token),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def list_ids(self) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            page = await self.list(page_size=100, page_token=token)
            ids += [s.id for s in page.schedules]
            token = page.next_page_token
            if not token:
                return ids

    async def update(self, schedule_id: str, **fields: Any) -> schedules_pb2.Schedule:
        return await self.stub.UpdateSchedule(
            schedules_pb2.UpdateScheduleRequest(id=schedule_id, schedule=self.request(**fields)),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def delete(self, schedule_id: str) -> None:
        await self.stub.DeleteSchedule(
            schedules_pb2.DeleteScheduleRequest(id=schedule_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def pause(self, schedule_id: str, note: str = "") -> schedules_pb2.Schedule:
        return await self.stub.PauseSchedule(
            schedules_pb2.PauseScheduleRequest(id=schedule_id, note=note),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def resume(self, schedule_id: str, note: str = "") -> schedules_pb2.Schedule:
        return await self.stub.ResumeSchedule(
            schedules_pb2.ResumeScheduleRequest(id=schedule_id, note=note),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def trigger(self, schedule_id: str) -> schedules_pb2.ScheduleFire:
        reply = await self.stub.TriggerSchedule(
            schedules_pb2.TriggerScheduleRequest(id=schedule_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        return reply.fire

    async def backfill(
        self, schedule_id: str, start_at: datetime, end_at: datetime
    ) -> list[schedules_pb2.ScheduleFire]:
        reply = await self.stub.BackfillSchedule(
            schedules_pb2.BackfillScheduleRequest(
                id=schedule_id, start_at=stamp(start_at), end_at=stamp(end_at)
            ),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        return list(reply.fires)


async def fired_tasks(client: Client, schedule: schedules_pb2.Schedule) -> list[tasks_pb2.Task]:
    """The tasks a schedule (with a labelled template) started, by scheduled time."""
    tasks: list[tasks_pb2.Task] = []
    token = ""
    while True:
        page = await client.list(page_size=500, page_token=token, label=f"{LABEL}={schedule.name}")
        tasks += page.tasks
        token = page.next_page_token
        if not token:
            break
    for task in tasks:
        assert task.schedule_id == schedule.id, task
        assert task.HasField("scheduled_at"), task
    return sorted(tasks, key=lambda task: when(task.scheduled_at))


async def fired_times(client: Client, schedule: schedules_pb2.Schedule) -> list[datetime]:
    return [when(task.scheduled_at) for task in await fired_tasks(client, schedule)]
