"""Traces across processes: the client's span (in-process SDK, in-memory
exporter) → the server's span of the call (child of the client's
traceparent) → the worker's span around the handler (child of the call that
created the task), exported by the server and worker subprocesses over OTLP
to a receiver this test runs. JSON log lines carry the same ids."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from orchestrator import errors
from orchestrator.client import Client, TaskStatus
from orchestrator.model import RunStatus
from tests.e2e.conftest import REPO, WorkerProcess
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

TIMEOUT = 60.0
CREATE_TASK = "/orchestrator.tasks.TaskService/CreateTask"
EXECUTE_WORKFLOW = "/orchestrator.workflows.WorkflowService/ExecuteWorkflow"
CONNECTED = r"connected to \S+ as worker [0-9a-f-]+"

# DEBUG: the line about a refused lookup (NOT_FOUND) is a debug line.
pytestmark = [
    pytest.mark.any_database,
    pytest.mark.server_env(ORCHESTRATOR_LOG_FORMAT="json", ORCHESTRATOR_LOG_LEVEL="DEBUG"),
]


def _of(span: Received, task_id: str) -> bool:
    return _of_any(span, {task_id})


def _of_any(span: Received, task_ids: set[str]) -> bool:
    return span.attributes.get("orchestrator.task.id") in task_ids


@dataclass(frozen=True)
class Received:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    failed: bool
    start: int
    end: int


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace receiver: keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._changed = asyncio.Condition()

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans += [_received(resource["service.name"], s) for s in scope_spans.spans]
        async with self._changed:
            self._changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(self, found: Callable[[list[Received]], list[Received]]) -> list[Received]:
        """What `found` picks out of the spans received, once it picks some."""
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: bool(found(self.spans)))
        return found(self.spans)


def _received(service: str, span: Any) -> Received:
    return Received(
        service=service,
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        attributes={a.key: _value(a.value) for a in span.attributes},
        failed=span.status.code == span.status.STATUS_CODE_ERROR,
        start=span.start_time_unix_nano,
        end=span.end_time_unix_nano,
    )


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    receiver = Collector()
    server = aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(None)


@pytest.fixture(autouse=True)
def exporting(collector: tuple[Collector, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The server and workers started by a test (autouse: before they are)
    inherit these and export to `collector`."""
    _, port = collector
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")


@pytest.fixture
async def client(orchestrator: ServerProcess) -> AsyncIterator[Client]:
    assert orchestrator.address
    async with Client(orchestrator.address) as connected:
        await connected.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        yield connected


@pytest.fixture
async def worker(orchestrator: ServerProcess, client: Client) -> AsyncIterator[WorkerProcess]:
    """The demo worker, logging JSON."""
    token = (await client.tokens.create("traced worker", "worker")).token
    process = WorkerProcess(
        "unused",
        env={
            "ORCHESTRATOR_URL": orchestrator.address,
            "ORCHESTRATOR_TOKEN": token,
            "ORCHESTRATOR_LOG_FORMAT": "json",
            "DATABASE_URL": None,
        },
        args=("worker", "--demo"),
        cwd=REPO,
    )
    process.launch()
    try:
        await asyncio.to_thread(process.wait_for_log, CONNECTED, TIMEOUT)
        yield process
    finally:
        await asyncio.to_thread(process.finish)


@pytest.fixture
def local() -> tuple[Tracer, InMemorySpanExporter]:
    """The client side: an SDK provider of this test's own (not the global
    one), exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test_traces"), exporter


def _ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


def _json_lines(process: ServerProcess) -> list[dict[str, Any]]:
    entries = []
    for line in process.lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


async def test_one_trace_from_the_clients_create_to_the_workers_handler(
    collector: tuple[Collector, int],
    local: tuple[Tracer, InMemorySpanExporter],
    client: Client,
    worker: WorkerProcess,
    orchestrator: ServerProcess,
) -> None:
    received, _ = collector
    tracer, exporter = local
    with tracer.start_as_current_span("submit echo"):
        task = await client.tasks.create("echo", {"n": 1}, start=True)
        with pytest.raises(errors.NotFound):  # a refused call is traced and logged too
            await client.tasks.get("no-such-task")
    (client_span,) = exporter.get_finished_spans()
    trace_id, client_span_id = _ids(client_span)
    assert (await client.tasks.wait(task.id)).status is TaskStatus.SUCCEEDED

    (create,) = await received.wait_for(
        lambda spans: [s for s in spans if s.trace_id == trace_id and s.name == CREATE_TASK]
    )
    assert (create.service, create.parent_id) == ("orchestrator", client_span_id)
    (run,) = await received.wait_for(
        lambda spans: [s for s in spans if s.name == "run echo" and _of(s, task.id)]
    )
    assert run.service == "orchestrator-worker"
    assert (run.name, run.trace_id, run.parent_id) == ("run echo", trace_id, create.span_id)
    assert not run.failed and run.attributes["orchestrator.task.attempt"] == 1
    # Started once the create's transaction committed: maybe before its reply went out.
    assert run.start > create.start
    # The server recorded the completion in the same trace, after the handler ran.
    (recorded,) = await received.wait_for(
        lambda spans: [s for s in spans if s.service == "orchestrator" and _of(s, task.id)]
    )
    assert (recorded.name, recorded.trace_id) == ("record succeeded echo", trace_id)
    assert recorded.parent_id == create.span_id and not recorded.failed
    assert recorded.end >= run.end

    # The worker's log lines about the task carry its id and the trace.
    handled = [e for e in _json_lines(worker) if e.get("task_id") == task.id]
    assert handled, worker.log
    assert {e.get("trace_id") for e in handled} == {trace_id}
    assert {e.get("span_id") for e in handled} == {run.span_id}
    assert {e.get("worker_id") for e in handled} != {None}
    # The server's line about the refused call carries the client's trace.
    refused = [e for e in _json_lines(orchestrator) if e.get("message") == "rpc failed"]
    assert [e.get("trace_id") for e in refused] == [trace_id], orchestrator.log


async def test_a_failed_handler_marks_its_span(
    collector: tuple[Collector, int], client: Client, worker: WorkerProcess
) -> None:
    received, _ = collector
    task = await client.tasks.run("fail", {"message": "no"}, max_attempts=1)
    assert task.status is TaskStatus.FAILED
    (run,) = await received.wait_for(
        lambda spans: [s for s in spans if s.name == "run fail" and _of(s, task.id)]
    )
    assert run.failed
    (recorded,) = await received.wait_for(
        lambda spans: [s for s in spans if s.service == "orchestrator" and _of(s, task.id)]
    )
    assert (recorded.name, recorded.trace_id, recorded.failed) == (
        "record failed fail",
        run.trace_id,
        True,
    )
    # No span was active in the client: the trace starts at the server's span of the create.
    (create,) = await received.wait_for(
        lambda spans: [s for s in spans if s.span_id == run.parent_id]
    )
    assert (create.name, create.trace_id, create.parent_id) == (CREATE_TASK, run.trace_id, "")


async def test_a_workflow_runs_nodes_share_the_runs_trace(
    collector: tuple[Collector, int],
    local: tuple[Tracer, InMemorySpanExporter],
    client: Client,
    worker: WorkerProcess,
) -> None:
    received, _ = collector
    tracer, exporter = local
    workflow = await client.workflows.create(
        "traced",
        {
            "nodes": [{"id": "a", "type": "echo"}, {"id": "b", "type": "echo"}],
            "edges": [{"source": "a", "target": "b"}],
        },
    )
    with tracer.start_as_current_span("run workflow"):
        run = await client.workflows.run(workflow.id, {"x": 1})
    assert run.status is RunStatus.SUCCEEDED
    trace_id, client_span_id = _ids(exporter.get_finished_spans()[0])
    task_ids = {node.task_id for node in run.nodes}
    assert len(task_ids) == 2

    (execute,) = await received.wait_for(
        lambda spans: [s for s in spans if s.trace_id == trace_id and s.name == EXECUTE_WORKFLOW]
    )
    assert execute.parent_id == client_span_id

    def every_node(service: str) -> Callable[[list[Received]], list[Received]]:
        def found(spans: list[Received]) -> list[Received]:
            mine = [s for s in spans if s.service == service and _of_any(s, task_ids)]
            return mine if len(mine) == len(task_ids) else []

        return found

    runs = await received.wait_for(every_node("orchestrator-worker"))
    assert {(s.trace_id, s.parent_id) for s in runs} == {(trace_id, execute.span_id)}
    recorded = await received.wait_for(every_node("orchestrator"))
    assert {(s.trace_id, s.parent_id) for s in recorded} == {(trace_id, execute.span_id)}


async def test_traceparent_from_any_grpc_client(
    collector: tuple[Collector, int], orchestrator: ServerProcess
) -> None:
    """W3C `traceparent` metadata, as any instrumented client sends it."""
    received, _ = collector
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert orchestrator.address
    async with aio.insecure_channel(orchestrator.address) as channel:
        call = channel.unary_unary("/orchestrator.health.HealthService/Check")
        await call(b"", metadata=(("traceparent", f"00-{trace_id}-{parent}-01"),), timeout=30)
    (check,) = await received.wait_for(lambda spans: [s for s in spans if s.trace_id == trace_id])
    assert check.parent_id == parent
    assert check.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
