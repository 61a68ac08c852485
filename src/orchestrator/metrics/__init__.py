"""Prometheus metrics: the registry the server's /metrics renders.

Our series carry the replica id as a constant label (`replica`); the
process and Python collectors, which describe the process itself, do not.
A registry of our own (not prometheus_client's global one), so servers
started in one process (tests) keep theirs apart.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from orchestrator.engine.runtime import Engine
from orchestrator.metrics.engine import EngineMetrics
from orchestrator.metrics.gauges import HubCounts, Labelled, QueueGauges, WorkerGauges
from orchestrator.metrics.grpc import GrpcMetrics, MetricsInterceptor
from orchestrator.store import Database

# The `_created` timestamp series double the output and no query here needs them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self, replica_id: str) -> None:
        ours = CollectorRegistry()
        self.grpc = GrpcMetrics(ours)
        self.engine = EngineMetrics(ours)
        self._ours = ours
        self._queue: QueueGauges | None = None
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(Labelled(ours, {"replica": replica_id}))

    def interceptor(self) -> MetricsInterceptor:
        """Goes first in the server's interceptors, to see every call's end."""
        return MetricsInterceptor(self.grpc)

    def watch(self, engine: Engine, database: Database) -> None:
        """Count what the engine does, and read its gauges at scrape time."""
        engine.journal.watch = self.engine
        self._ours.register(WorkerGauges(engine.dispatcher))
        self._ours.register(HubCounts({"task": engine.task_events, "run": engine.run_events}))
        self._queue = QueueGauges(database)
        self._ours.register(self._queue)

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition for a scrape (text, or OpenMetrics when asked for),
        and its content type."""
        if self._queue is not None:
            await self._queue.refresh()
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


__all__ = ["Metrics"]
