"""Which exporter OTEL_* asks for, and the traceparent helpers."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider

from orchestrator import tracing
from orchestrator.config import ConfigError

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", [None, "", "none", " None "])
def test_off_unless_named(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert tracing.exporter_names() == []


def test_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.exporter_names() == []


def test_otlp_follows_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    assert tracing.exporter_names() == ["otlp_proto_grpc", "console"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL='http/json'"):
        tracing.exporter_names()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")  # the traces' own wins
    assert tracing.exporter_names() == ["otlp_proto_grpc", "console"]


def test_an_exporter_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigError, match=r"OTEL_TRACES_EXPORTER='jaeger'.*'jaeger'"):
        tracing.exporter_names()


def test_traceparent_round_trip() -> None:
    assert tracing.current_traceparent() is None and tracing.ids() == {}
    continued = tracing.context_of(TRACEPARENT)
    assert continued is not None
    token = context.attach(continued)
    try:
        assert tracing.current_traceparent() == TRACEPARENT
        assert tracing.ids() == {
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
        }
        with TracerProvider().get_tracer("test").start_as_current_span("child") as span:
            child = tracing.current_traceparent()
            assert child is not None and child.split("-")[1] == TRACEPARENT.split("-")[1]
            assert child.split("-")[2] == format(span.get_span_context().span_id, "016x")
    finally:
        context.detach(token)


@pytest.mark.parametrize("value", [None, "", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01"])
def test_no_context_from_no_or_a_bad_traceparent(value: str | None) -> None:
    assert tracing.context_of(value) is None
    assert not trace.get_current_span().get_span_context().is_valid


def test_without_a_provider_a_handler_still_runs_in_the_callers_trace() -> None:
    """No tracer provider installed (this test process sets none): no span
    is made, but the caller's context is current, so logs carry its trace."""
    tracer = trace.get_tracer("test")
    with tracing.continued(tracer, "run echo", TRACEPARENT, {}) as span:
        assert span is None
        assert tracing.ids()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert tracing.ids() == {}
    with tracing.continued(tracer, "run echo", "", {}) as span:
        assert span is None and tracing.ids() == {}
