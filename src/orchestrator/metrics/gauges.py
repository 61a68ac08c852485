"""Series read when Prometheus scrapes, not counted as things happen: the
workers connected here, the event hubs' counts, and the shared queue.

The queue gauges come from the database, so every replica reports the same
queue (do not sum them across replicas). They are read by one grouped query
over the dispatch index (QUEUED rows only: a range of the index, never the
table), run in the event loop by the /metrics handler before it renders
(`QueueGauges.refresh`), at most once per REFRESH_SECONDS whatever the number
of scrapers. No background loop: a server nobody scrapes pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator.engine.dispatch import Dispatcher
from orchestrator.store import Database
from orchestrator.store.status import QueueDepth, queue_depths
from orchestrator.store.types import utcnow

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0
# Types once seen are reported (as 0) when their queue empties, so a graph
# falls to zero instead of stopping; past this many, only those queued now.
MAX_REMEMBERED_TYPES = 1000


class WorkerGauges(Collector):
    """The workers connected to this replica and their slots."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def collect(self) -> Iterable[Metric]:
        sessions = self._dispatcher.sessions
        connected = GaugeMetricFamily(
            "orchestrator_workers_connected", "Workers connected to this replica."
        )
        connected.add_metric([], len(sessions))
        slots: defaultdict[str, int] = defaultdict(int)
        busy: defaultdict[str, int] = defaultdict(int)
        for session in sessions:
            for task_type in session.task_types:
                slots[task_type] += session.slots
                busy[task_type] += len(session.in_flight)
        total = GaugeMetricFamily(
            "orchestrator_worker_slots",
            "Slots of the workers connected here that serve the type (a worker "
            "of several types counts under each).",
            labels=["type"],
        )
        in_use = GaugeMetricFamily(
            "orchestrator_worker_slots_in_use",
            "Slots running a task, of the workers connected here that serve the type.",
            labels=["type"],
        )
        for task_type in sorted(slots):
            total.add_metric([task_type], slots[task_type])
            in_use.add_metric([task_type], busy[task_type])
        return [connected, total, in_use]


class Hub(Protocol):
    """What an event hub counts (engine/events.py)."""

    @property
    def delivered(self) -> int: ...

    @property
    def dropped_to_log(self) -> int: ...


class HubCounts(Collector):
    """Live event delivery on this replica."""

    def __init__(self, hubs: Mapping[str, Hub]) -> None:
        self._hubs = hubs

    def collect(self) -> Iterable[Metric]:
        delivered = CounterMetricFamily(
            "orchestrator_events_delivered",
            "Events handed to live followers (stream = task or run).",
            labels=["stream"],
        )
        dropped = CounterMetricFamily(
            "orchestrator_event_followers_dropped",
            "Followers that fell STREAM_BUFFER_SIZE events behind and went back "
            "to reading the log.",
            labels=["stream"],
        )
        for name, hub in self._hubs.items():
            delivered.add_metric([name], hub.delivered)
            dropped.add_metric([name], hub.dropped_to_log)
        return [delivered, dropped]


class QueueGauges(Collector):
    """The shared queue by type, as of the last refresh."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._depths: list[QueueDepth] | None = None
        self._read_at = float("-inf")
        self._types: set[str] = set()
        self._reading: asyncio.Lock = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the queue again if the last read is older than REFRESH_SECONDS.
        A database that cannot answer leaves the queue series out of this
        scrape rather than showing stale numbers."""
        async with self._reading:
            if time.monotonic() - self._read_at < REFRESH_SECONDS:
                return
            try:
                async with self._database.read() as conn:
                    self._depths = await queue_depths(conn, utcnow())
            except Exception as error:
                log.warning("metrics: queue depth not read: %s", error)
                self._depths = None
            self._read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        if self._depths is None:
            return []
        now = utcnow()
        depth = GaugeMetricFamily(
            "orchestrator_queue_depth",
            "QUEUED tasks by type, across all replicas (from the database).",
            labels=["type"],
        )
        not_due = GaugeMetricFamily(
            "orchestrator_queue_not_due",
            "QUEUED tasks not due yet (a start time or a retry's backoff ahead).",
            labels=["type"],
        )
        oldest = GaugeMetricFamily(
            "orchestrator_queue_oldest_age_seconds",
            "How long the longest-queued task of the type has been QUEUED.",
            labels=["type"],
        )
        seen = {entry.type: entry for entry in self._depths}
        if len(self._types) + len(seen) <= MAX_REMEMBERED_TYPES:
            self._types.update(seen)
        for task_type in sorted(self._types | seen.keys()):
            entry = seen.get(task_type)
            depth.add_metric([task_type], entry.queued if entry else 0)
            not_due.add_metric([task_type], entry.not_due if entry else 0)
            age = 0.0
            if entry is not None and entry.oldest_queued_at is not None:
                age = max(0.0, (now - entry.oldest_queued_at).total_seconds())
            oldest.add_metric([task_type], age)
        return [depth, not_due, oldest]


class Labelled(Collector):
    """Every series of `inner` with `labels` added (the replica id)."""

    def __init__(self, inner: Collector, labels: Mapping[str, str]) -> None:
        self._inner = inner
        self._labels = dict(labels)

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, **self._labels})
                for sample in family.samples
            ]
            yield labelled
