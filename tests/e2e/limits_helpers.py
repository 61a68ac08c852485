"""Helpers for the tests of concurrency keys and rate buckets: tasks'
running intervals as the server recorded them, and what they add up to."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.proto import tasks_pb2
from tests.e2e.conftest import Client, event_name

ENDS = {"SUCCEEDED", "FAILED", "CANCELLED", "REQUEUED", "RETRYING"}


@dataclass(frozen=True)
class Interval:
    task_id: str
    key: str
    start: float
    end: float


def seconds(stamp: Any) -> float:
    return float(stamp.seconds + stamp.nanos / 1e9)


async def keyed(
    client: Client, type: str, input: dict[str, Any], key: str, limit: int, **fields: Any
) -> tasks_pb2.Task:
    return await client.create(
        type, input, start=True, concurrency_key=key, concurrency_limit=limit, **fields
    )


async def intervals(client: Client, tasks: Sequence[tasks_pb2.Task]) -> list[Interval]:
    """Every attempt of each task, from its STARTED event to the event that
    ended it (the server's own times), once the task is finished: WatchTask
    replays the log and follows it to the end."""
    logs = await asyncio.gather(*(client.watch(t.id) for t in tasks))
    found: list[Interval] = []
    for task, events in zip(tasks, logs, strict=True):
        started: float | None = None
        for event in events:
            name = event_name(event.type)
            if name == "STARTED":
                started = seconds(event.timestamp)
            elif name in ENDS and started is not None:
                found.append(
                    Interval(task.id, task.concurrency_key, started, seconds(event.timestamp))
                )
                started = None
        assert started is None, f"task {task.id} never finished its attempt: {events}"
    return found


def most_at_once(spans: Iterable[Interval]) -> dict[str, int]:
    """The most intervals of each key open at one moment (one that ends as
    another starts, in one transaction, does not overlap it)."""
    moments: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)
    for span in spans:
        moments[span.key] += [(span.start, 1), (span.end, -1)]
    most: dict[str, int] = {}
    for key, changes in moments.items():
        now = peak = 0
        for _, change in sorted(changes):  # at one time, ends (-1) first
            now += change
            peak = max(peak, now)
        most[key] = peak
    return most


def by_key(spans: Iterable[Interval]) -> dict[str, tuple[float, float]]:
    """Each key's first start and last end."""
    bounds: dict[str, tuple[float, float]] = {}
    for span in spans:
        first, last = bounds.get(span.key, (span.start, span.end))
        bounds[span.key] = (min(first, span.start), max(last, span.end))
    return bounds
