"""Helpers for the end-to-end tests of workflows (DESIGN §4-§5): definition
builders, a WorkflowService client with the caller's token on every call,
event helpers, and two workers that serve part of the demo types (so a test
can hold back one type until it is ready for it).

    flows = Flows(admin)
    workflow = await flows.create("diamond", [node("a"), node("b")], [edge("a", "b")])
    events = await flows.execute(workflow.id, {"n": 1})
    assert kinds(events)[-1] == "RUN_SUCCEEDED"

The partial workers run with `orchestrator worker tests.e2e.workflow_helpers:NAME`
from the repository root (the `start_worker` fixture's working directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from orchestrator.proto import auth_pb2, workflows_pb2, workflows_pb2_grpc
from orchestrator.worker import Worker
from orchestrator.worker import demo as demo_types
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    Client,
    WorkerProcess,
    connect,
    read_rest,
    read_until,
    to_struct,
)
from tests.support.server import ServerProcess

RUN_RUNNING = workflows_pb2.WORKFLOW_RUN_STATUS_RUNNING
RUN_SUCCEEDED = workflows_pb2.WORKFLOW_RUN_STATUS_SUCCEEDED
RUN_FAILED = workflows_pb2.WORKFLOW_RUN_STATUS_FAILED
RUN_CANCELLED = workflows_pb2.WORKFLOW_RUN_STATUS_CANCELLED

# -- definitions -------------------------------------------------------------------


def node(
    id: str,
    type: str = "echo",
    input: Mapping[str, Any] | None = None,
    expression: str = "",
    **fields: Any,
) -> workflows_pb2.Node:
    return workflows_pb2.Node(
        id=id, type=type, input=to_struct(input or {}), input_expression=expression, **fields
    )


def edge(source: str, target: str, condition: str = "") -> workflows_pb2.Edge:
    return workflows_pb2.Edge(source=source, target=target, condition=condition)


def definition(
    nodes: Iterable[workflows_pb2.Node], edges: Iterable[workflows_pb2.Edge] = ()
) -> workflows_pb2.WorkflowDefinition:
    return workflows_pb2.WorkflowDefinition(nodes=list(nodes), edges=list(edges))


# -- events ------------------------------------------------------------------------


def kind(event: workflows_pb2.WorkflowEvent) -> str:
    return workflows_pb2.WorkflowEventType.Name(event.type).removeprefix("WORKFLOW_EVENT_TYPE_")


def kinds(events: Iterable[workflows_pb2.WorkflowEvent]) -> list[str]:
    """Event types by short name, in order: ["RUN_STARTED", "NODE_QUEUED", ...]."""
    return [kind(e) for e in events]


def node_kinds(events: Iterable[workflows_pb2.WorkflowEvent], node_id: str) -> list[str]:
    """The types of one node's events, in order."""
    return [kind(e) for e in events if e.node_id == node_id]


def count_of(events: Iterable[workflows_pb2.WorkflowEvent], name: str) -> Counter[str]:
    """How many events of type `name` each node has."""
    return Counter(e.node_id for e in events if kind(e) == name)


def is_event(name: str, node_id: str | None = None) -> Callable[[Any], bool]:
    """A predicate for read_until: an event of this type (and node)."""
    wanted = workflows_pb2.WorkflowEventType.Value(f"WORKFLOW_EVENT_TYPE_{name}")
    return lambda e: e.type == wanted and (node_id is None or e.node_id == node_id)


def node_status_name(value: int) -> str:
    return workflows_pb2.NodeStatus.Name(value).removeprefix("NODE_STATUS_")


def nodes_of(run: workflows_pb2.WorkflowRun) -> dict[str, workflows_pb2.NodeRun]:
    return {n.node_id: n for n in run.nodes}


def statuses(run: workflows_pb2.WorkflowRun) -> dict[str, str]:
    """Each node's status by short name."""
    return {n.node_id: node_status_name(n.status) for n in run.nodes}


# -- the client --------------------------------------------------------------------


class Flows:
    """WorkflowService for one user (a conftest Client), with deadlines."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.metadata = client.metadata
        self.stub = workflows_pb2_grpc.WorkflowServiceStub(client.channel)

    async def create(
        self,
        name: str,
        nodes: Iterable[workflows_pb2.Node],
        edges: Iterable[workflows_pb2.Edge] = (),
        description: str = "",
    ) -> workflows_pb2.Workflow:
        request = workflows_pb2.CreateWorkflowRequest(
            name=name, definition=definition(nodes, edges), description=description
        )
        return await self.stub.CreateWorkflow(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    async def get(self, workflow_id: str, version: int = 0) -> workflows_pb2.Workflow:
        return await self.stub.GetWorkflow(
            workflows_pb2.GetWorkflowRequest(id=workflow_id, version=version),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def update(
        self,
        workflow_id: str,
        nodes: Iterable[workflows_pb2.Node],
        edges: Iterable[workflows_pb2.Edge] = (),
        description: str = "",
    ) -> workflows_pb2.Workflow:
        request = workflows_pb2.UpdateWorkflowRequest(
            id=workflow_id, definition=definition(nodes, edges), description=description
        )
        return await self.stub.UpdateWorkflow(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    async def delete(self, workflow_id: str) -> None:
        await self.stub.DeleteWorkflow(
            workflows_pb2.DeleteWorkflowRequest(id=workflow_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def validate(
        self,
        nodes: Iterable[workflows_pb2.Node],
        edges: Iterable[workflows_pb2.Edge] = (),
    ) -> list[str]:
        reply = await self.stub.ValidateWorkflow(
            workflows_pb2.ValidateWorkflowRequest(definition=definition(nodes, edges)),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        return list(reply.order)

    async def list(self, page_size: int = 0, page_token: str = "") -> tuple[list[Any], str]:
        reply = await self.stub.ListWorkflows(
            workflows_pb2.ListWorkflowsRequest(page_size=page_size, page_token=page_token),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        return list(reply.workflows), reply.next_page_token

    async def list_runs(
        self, page_size: int = 0, page_token: str = "", **filters: Any
    ) -> tuple[list[Any], str]:
        reply = await self.stub.ListWorkflowRuns(
            workflows_pb2.ListWorkflowRunsRequest(
                page_size=page_size, page_token=page_token, **filters
            ),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
        return list(reply.runs), reply.next_page_token

    def execute_call(
        self, workflow_id: str, input: Mapping[str, Any] | None = None, version: int = 0
    ) -> Any:
        return self.stub.ExecuteWorkflow(
            workflows_pb2.ExecuteWorkflowRequest(
                workflow_id=workflow_id, input=to_struct(input or {}), version=version
            ),
            metadata=self.metadata,
            timeout=120,
        )

    async def execute(
        self, workflow_id: str, input: Mapping[str, Any] | None = None, version: int = 0
    ) -> list[workflows_pb2.WorkflowEvent]:
        """Everything ExecuteWorkflow streams, to the end of the run."""
        return await read_rest(self.execute_call(workflow_id, input, version))

    def watch_call(self, run_id: str, after_sequence: int = 0) -> Any:
        return self.stub.WatchWorkflowRun(
            workflows_pb2.WatchWorkflowRunRequest(id=run_id, after_sequence=after_sequence),
            metadata=self.metadata,
            timeout=120,
        )

    async def watch(
        self, run_id: str, after_sequence: int = 0
    ) -> list[workflows_pb2.WorkflowEvent]:
        """Everything WatchWorkflowRun streams, to the end of the run."""
        return await read_rest(self.watch_call(run_id, after_sequence))

    async def run(self, run_id: str) -> workflows_pb2.WorkflowRun:
        return await self.stub.GetWorkflowRun(
            workflows_pb2.GetWorkflowRunRequest(id=run_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def cancel(self, run_id: str, reason: str = "") -> workflows_pb2.WorkflowRun:
        return await self.stub.CancelWorkflowRun(
            workflows_pb2.CancelWorkflowRunRequest(id=run_id, reason=reason),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )

    async def start(
        self, workflow_id: str, input: Mapping[str, Any] | None = None, version: int = 0
    ) -> tuple[Any, workflows_pb2.WorkflowEvent]:
        """Starts a run; the open ExecuteWorkflow call and its RUN_STARTED."""
        call = self.execute_call(workflow_id, input, version)
        first = await read_until(call, lambda _: True)
        assert kinds(first) == ["RUN_STARTED"], first
        return call, first[0]


MEMBER_PASSWORD = "member-password-1"


async def create_member(admin: Client, username: str, password: str = MEMBER_PASSWORD) -> str:
    """A new member account; its user id."""
    user = await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username=username, password=password, role="member"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )
    return str(user.id)


@contextlib.asynccontextmanager
async def fresh_member(server: ServerProcess) -> AsyncIterator[Client]:
    """A new member account on `server`, logged in. A member sees only its
    own workflows, runs and tasks, so tests that each use a fresh one can
    share a server without seeing each other's state."""
    username = f"member-{uuid.uuid4().hex[:12]}"
    async with connect(server) as admin:
        await create_member(admin, username)
    async with connect(server, username, MEMBER_PASSWORD) as client:
        yield client


# -- workers -----------------------------------------------------------------------


def echo_sleep_worker() -> Worker:
    """The demo worker without `fail`: a `fail` node waits for another worker."""
    worker = Worker(name="workflow-echo-sleep", slots=8)
    worker.register("echo", demo_types.echo)
    worker.register("sleep", demo_types.sleep)
    return worker


def fail_worker() -> Worker:
    """Only the demo type `fail`."""
    worker = Worker(name="workflow-fail", slots=2)
    worker.register("fail", demo_types.fail)
    return worker


@contextlib.asynccontextmanager
async def worker_process(
    server: ServerProcess, token: str, *args: str
) -> AsyncIterator[WorkerProcess]:
    """`orchestrator worker ARGS...` against `server`, one the start_worker
    fixture does not know (a restarted server): connected on entry, stopped
    on exit."""
    process = WorkerProcess(server, token, args)
    try:
        process.launch()
        yield await asyncio.to_thread(process.connected)
    finally:
        await asyncio.to_thread(process.finish)
