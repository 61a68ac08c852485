"""OpenTelemetry tracing: off unless `OTEL_TRACES_EXPORTER` names an exporter.

The standard `OTEL_*` variables configure it (exporter, endpoint, protocol,
service name, sampler, batch delays), read by the SDK itself; only the
choice of exporter is made here, because the SDK leaves that to a "distro"
and the specification's default (`otlp`) would make every server try to
reach a collector on localhost. Left unset, no tracer provider is installed:
the API's no-op one makes a span cost a context lookup, and the server adds
no interceptor at all.

A task carries its trace as a W3C `traceparent` string (`trace_context` in
the database, `traceparent` on the assignment), so the worker that runs it
continues the trace of the call that created it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from grpc import aio
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

TRACEPARENT = "traceparent"
EXPORTER_GROUP = "opentelemetry_traces_exporter"
# The names of `OTEL_EXPORTER_OTLP_PROTOCOL` to the exporter packages' entry points.
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_OTLP_EXTRA = "pip install 'orchestrator[otel]'"

_propagator = TraceContextTextMapPropagator()


def exporter_names() -> list[str]:
    """The exporters `OTEL_TRACES_EXPORTER` asks for (none when unset or
    `none`, or when `OTEL_SDK_DISABLED` is true), checked to be installed;
    ConfigError names the variable and its value otherwise."""
    # Here, not at the top: the worker and client SDKs use this module and
    # must not pay for the server's settings (pydantic) at import.
    from orchestrator.config import ConfigError

    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if names == ["none"] or not names:
        return []
    resolved = [_otlp_entry_point() if name == "otlp" else name for name in names]
    installed = {e.name for e in entry_points(group=EXPORTER_GROUP)}
    for name, entry in zip(names, resolved, strict=True):
        if entry not in installed:
            hint = f" ({_OTLP_EXTRA})" if entry.startswith("otlp") else ""
            raise ConfigError(
                f"invalid OTEL_TRACES_EXPORTER={value!r}: no exporter {name!r} is installed{hint}"
            )
    return resolved


def _otlp_entry_point() -> str:
    from orchestrator.config import ConfigError

    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = os.environ.get(variable, "").strip()
    if not protocol:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = os.environ.get(variable, "").strip() or "grpc"
    if protocol not in _OTLP_BY_PROTOCOL:
        choices = ", ".join(_OTLP_BY_PROTOCOL)
        raise ConfigError(f"invalid {variable}={protocol!r}: expected one of {choices}")
    return _OTLP_BY_PROTOCOL[protocol]


def configure(service_name: str) -> TracerProvider | None:
    """Install a tracer provider exporting to what the environment names,
    and return it (to shut it down, which flushes); None when tracing is off.
    `OTEL_SERVICE_NAME` wins over `service_name`."""
    names = exporter_names()
    if not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    return provider


def _exporter(name: str) -> SpanExporter:
    (entry,) = entry_points(group=EXPORTER_GROUP, name=name)
    exporter: SpanExporter = entry.load()()
    return exporter


def server_interceptors(provider: TracerProvider | None) -> list[aio.ServerInterceptor]:
    """A span per RPC, child of the caller's `traceparent` metadata: the
    stock grpc.aio interceptor, outermost so that refused calls (the gate's
    UNAUTHENTICATED, a bad request) get a span with their status too. None
    when tracing is off."""
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    # The instrumentation package has no annotations.
    interceptor: aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    return [interceptor]


def current_traceparent() -> str | None:
    """The active span as a `traceparent` value, or None when no span is."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a `traceparent` value continues; None for none or a bad one."""
    if not traceparent:
        return None
    extracted = _propagator.extract({TRACEPARENT: traceparent})
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


@contextlib.contextmanager
def continued(
    tracer: trace.Tracer, name: str, traceparent: str, attributes: Mapping[str, str | int]
) -> Iterator[trace.Span | None]:
    """A span named `name`, child of `traceparent`, current within; None
    when no tracer provider is installed. Then the span would record
    nothing, and making it costs more than what it wraps on a busy worker:
    only the caller's context is made current, so logs still carry its
    trace."""
    parent = context_of(traceparent)
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        token = otel_context.attach(parent) if parent is not None else None
        try:
            yield None
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    with tracer.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def enabled() -> bool:
    """Whether a tracer provider is installed (spans are recorded)."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def record(
    tracer: trace.Tracer,
    name: str,
    traceparent: str | None,
    start: datetime,
    attributes: Mapping[str, str | int],
    error: str = "",
) -> None:
    """A span that has just happened, from `start` to now, child of
    `traceparent` (nothing without one): work applied in a transaction is
    known to have happened only once it commits."""
    parent = context_of(traceparent)
    if parent is None:
        return
    span = tracer.start_span(
        name, context=parent, attributes=attributes, start_time=int(start.timestamp() * 1e9)
    )
    if error:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
    span.end()


def ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the active span, as in W3C headers; empty
    when no span is active."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {
        "trace_id": format(span_context.trace_id, "032x"),
        "span_id": format(span_context.span_id, "016x"),
    }


__all__ = [
    "TRACEPARENT",
    "configure",
    "context_of",
    "continued",
    "current_traceparent",
    "enabled",
    "exporter_names",
    "ids",
    "record",
    "server_interceptors",
]
