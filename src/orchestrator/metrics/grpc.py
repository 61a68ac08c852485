"""The standard gRPC server series (`grpc_server_started_total`,
`grpc_server_handled_total`, `grpc_server_handling_seconds`, as
go-grpc-prometheus names them, so the usual dashboards work) and the open
streams by kind.

The interceptor goes first in the server's list, so it wraps every other:
it sees the code a call really ended with, a refusal by the auth gate or a
mapped domain error included. A stream is timed over its whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator import handlers
from orchestrator.handlers import Handler

# From a millisecond to a minute; longer calls are streams, whose count and
# total time (the histogram's _count and _sum) say more than a bucket would.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)

_TYPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi_stream",
}


# Services whose streams follow a task or a run.
_FOLLOWED = frozenset({"orchestrator.tasks.TaskService", "orchestrator.workflows.WorkflowService"})


def stream_kind(service: str, method: str) -> str | None:
    """Which open-streams gauge a method's calls count in, if any."""
    if service == "orchestrator.workers.WorkerService":
        return "worker"
    if service not in _FOLLOWED:
        return None
    if method.startswith("Watch"):
        return "watch"
    if method.startswith("Execute"):
        return "execute"
    return None


class GrpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started",
            "RPCs started on the server.",
            labels,
            registry=registry,
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from the start of an RPC to its end (a stream: its whole life).",
            labels,
            buckets=SECONDS_BUCKETS,
            registry=registry,
        )
        self.open_streams = Gauge(
            "orchestrator_grpc_open_streams",
            "Streams open now, by kind: watch (WatchTask, WatchWorkflowRun), "
            "execute (ExecuteTask, ExecuteWorkflow), worker (WorkerService).",
            ("kind",),
            registry=registry,
        )


class _Method:
    """One method's series, looked up once rather than at every call."""

    def __init__(self, metrics: GrpcMetrics, full_method: str, handler: Handler) -> None:
        service, _, name = full_method.lstrip("/").partition("/")
        labels = (_TYPES[(handler.request_streaming, handler.response_streaming)], service, name)
        self._labels = labels
        self._handled = metrics.handled
        self._by_code: dict[str, Counter] = {}
        self.started = metrics.started.labels(*labels)
        self.seconds = metrics.seconds.labels(*labels)
        kind = stream_kind(service, name)
        self.open = metrics.open_streams.labels(kind) if kind else None

    def handled(self, code: str) -> Counter:
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._handled.labels(*self._labels, code)
        return counter

    @contextlib.asynccontextmanager
    async def observe(self, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        self.started.inc()
        if self.open is not None:
            self.open.inc()
        began = time.perf_counter()
        code = "UNKNOWN"
        try:
            yield
            code = _code_name(context.code(), "OK")
        except aio.AbortError:
            code = _code_name(context.code(), "UNKNOWN")
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away (or the server is stopping the call).
            code = "CANCELLED"
            raise
        finally:
            self.seconds.observe(time.perf_counter() - began)
            self.handled(code).inc()
            if self.open is not None:
                self.open.dec()


def _code_name(code: object, default: str) -> str:
    if isinstance(code, grpc.StatusCode):
        return code.name
    return default


class MetricsInterceptor(aio.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics
        self._methods: dict[str, _Method] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            # No such method: gRPC answers UNIMPLEMENTED before any handler, and
            # counting names a client made up would let it grow the label set.
            return None
        full_method = handler_call_details.method
        method = self._methods.get(full_method)
        if method is None:
            method = self._methods[full_method] = _Method(self._metrics, full_method, handler)
        return handlers.wrap(handler, lambda context, _request: method.observe(context))
