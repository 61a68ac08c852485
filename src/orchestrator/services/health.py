"""orchestrator.health.HealthService: how this replica is doing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from grpc import aio
from grpc_health.v1 import health as grpc_health
from grpc_health.v1 import health_pb2 as grpc_health_pb2

from orchestrator import __version__
from orchestrator.errors import Unavailable
from orchestrator.proto import health_pb2, health_pb2_grpc
from orchestrator.services.shutdown import SHUTTING_DOWN, Shutdown
from orchestrator.store import Database

SERVING = health_pb2.HEALTH_STATUS_SERVING
NOT_SERVING = health_pb2.HEALTH_STATUS_NOT_SERVING
_SERVING = grpc_health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = grpc_health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = grpc_health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServiceServicer):
    def __init__(self, database: Database, shutdown: Shutdown, replica_id: str) -> None:
        self._database = database
        self._shutdown = shutdown
        self._replica_id = replica_id
        self._started = time.monotonic()
        self._not_serving = asyncio.Event()

    def set_not_serving(self) -> None:
        """The first step of shutdown: tell load balancers before anything stops."""
        self._not_serving.set()

    def status(self) -> health_pb2.HealthStatus.ValueType:
        return NOT_SERVING if self._not_serving.is_set() else SERVING

    async def wait_not_serving(self) -> None:
        await self._not_serving.wait()

    async def Check(
        self, request: health_pb2.CheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> health_pb2.CheckResponse:
        reachable = await self._database.ping()
        return health_pb2.CheckResponse(
            status=self.status() if reachable else NOT_SERVING,
            version=__version__,
            uptime_seconds=int(time.monotonic() - self._started),
            metadata={
                "database": "reachable" if reachable else "unreachable",
                "database_dialect": self._database.dialect,
                "replica_id": self._replica_id,
            },
        )

    async def Watch(
        self, request: health_pb2.WatchRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[health_pb2.WatchResponse]:
        yield health_pb2.WatchResponse(status=self.status())
        await self._not_serving.wait()
        yield health_pb2.WatchResponse(status=NOT_SERVING)
        await self._shutdown.wait()
        raise Unavailable(SHUTTING_DOWN)


class StandardHealth(grpc_health.aio.HealthServicer):
    """grpc.health.v1.Health, grpc_health's own, but with a Watch that ends
    at shutdown like every other stream (the library's holds the server for
    the whole grace period)."""

    def __init__(self, health: HealthService, shutdown: Shutdown, services: Iterable[str]) -> None:
        super().__init__()
        self._health = health
        self._shutdown = shutdown
        self._services = frozenset({"", *services})

    async def Watch(  # type: ignore[override]
        self, request: grpc_health_pb2.HealthCheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[grpc_health_pb2.HealthCheckResponse]:
        if request.service not in self._services:
            yield grpc_health_pb2.HealthCheckResponse(status=_UNKNOWN)
        else:
            serving = self._health.status() == SERVING
            yield grpc_health_pb2.HealthCheckResponse(status=_SERVING if serving else _NOT_SERVING)
            await self._health.wait_not_serving()
            if serving:
                yield grpc_health_pb2.HealthCheckResponse(status=_NOT_SERVING)
        await self._shutdown.wait()
        raise Unavailable(SHUTTING_DOWN)
