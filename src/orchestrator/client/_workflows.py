"""`client.workflows`: the definitions of WorkflowService, and starting runs."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator.client import _convert
from orchestrator.client._definitions import definition_from_dict
from orchestrator.client._runs import Runs
from orchestrator.client._streams import RunStream
from orchestrator.client._transport import Transport
from orchestrator.client._values import Page, Workflow, WorkflowRun
from orchestrator.errors import InvalidArgument, NotFound
from orchestrator.model import Definition
from orchestrator.proto import workflows_pb2


def _definition(value: Definition | Mapping[str, Any]) -> workflows_pb2.WorkflowDefinition:
    if not isinstance(value, Definition):
        value = definition_from_dict(value)
    return _convert.definition_message(value)


class Workflows:
    def __init__(self, transport: Transport, runs: Runs) -> None:
        self._transport = transport
        self._runs = runs

    async def create(
        self, name: str, definition: Definition | Mapping[str, Any], description: str = ""
    ) -> Workflow:
        """Validate and store a workflow (version 1). `definition` is a
        Definition or `{"nodes": [...], "edges": [...]}`."""
        request = workflows_pb2.CreateWorkflowRequest(
            name=name, definition=_definition(definition), description=description
        )
        reply = await self._transport.unary(
            lambda s: s.workflows.CreateWorkflow, request, idempotent=False
        )
        return _convert.workflow(reply)

    async def get(self, workflow_id: str, version: int = 0) -> Workflow:
        """The latest version, or the one asked for."""
        request = workflows_pb2.GetWorkflowRequest(id=workflow_id, version=version)
        reply = await self._transport.unary(
            lambda s: s.workflows.GetWorkflow, request, idempotent=True
        )
        return _convert.workflow(reply)

    async def list(self, *, page_size: int = 0, page_token: str = "") -> Page[Workflow]:
        request = workflows_pb2.ListWorkflowsRequest(page_size=page_size, page_token=page_token)
        reply = await self._transport.unary(
            lambda s: s.workflows.ListWorkflows, request, idempotent=True
        )
        return Page(tuple(_convert.workflow(w) for w in reply.workflows), reply.next_page_token)

    async def list_all(self) -> AsyncIterator[Workflow]:
        token = ""
        while True:
            page = await self.list(page_size=500, page_token=token)
            for workflow in page.items:
                yield workflow
            token = page.next_page_token
            if not token:
                return

    async def find(self, name_or_id: str) -> Workflow:
        """The workflow with this id, else the one with this name."""
        try:
            return await self.get(name_or_id)
        except NotFound:
            pass
        found = [w async for w in self.list_all() if w.name == name_or_id]
        if not found:
            raise NotFound(f"no workflow is named {name_or_id!r} or has that id")
        if len(found) > 1:
            ids = ", ".join(w.id for w in found)
            raise InvalidArgument.field(
                "workflow", f"{len(found)} workflows are named {name_or_id!r}: give an id ({ids})"
            )
        return found[0]

    async def update(
        self, workflow_id: str, definition: Definition | Mapping[str, Any], description: str = ""
    ) -> Workflow:
        """Store a new version; runs already started keep theirs."""
        request = workflows_pb2.UpdateWorkflowRequest(
            id=workflow_id, definition=_definition(definition), description=description
        )
        reply = await self._transport.unary(
            lambda s: s.workflows.UpdateWorkflow, request, idempotent=False
        )
        return _convert.workflow(reply)

    async def delete(self, workflow_id: str) -> None:
        request = workflows_pb2.DeleteWorkflowRequest(id=workflow_id)
        await self._transport.unary(lambda s: s.workflows.DeleteWorkflow, request, idempotent=False)

    async def validate(self, definition: Definition | Mapping[str, Any]) -> builtins.list[str]:
        """The order the nodes could run in; InvalidArgument listing every
        problem of the definition."""
        request = workflows_pb2.ValidateWorkflowRequest(definition=_definition(definition))
        reply = await self._transport.unary(
            lambda s: s.workflows.ValidateWorkflow, request, idempotent=True
        )
        return list(reply.order)

    def execute(
        self,
        workflow_id: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        not_before: datetime | None = None,
        delay: timedelta | float | None = None,
    ) -> RunStream:
        """Start a run and follow it: its events, from RUN_STARTED (which
        names the run: `stream.run_id`) to its end. With `not_before` (a
        naive time is local) or `delay` (seconds or a timedelta) its first
        nodes start no earlier."""
        request = workflows_pb2.ExecuteWorkflowRequest(
            workflow_id=workflow_id,
            input=_convert.struct(input, "input"),
            version=version,
            not_before=_convert.timestamp(not_before) if not_before else None,
            delay=_convert.duration(delay) if delay is not None else None,
        )
        return RunStream(self._transport, start=request)

    async def run(
        self,
        workflow_id: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int = 0,
        not_before: datetime | None = None,
        delay: timedelta | float | None = None,
    ) -> WorkflowRun:
        """Start a run and wait for its end: the finished run, nodes and
        their outputs included (a failed run is not an exception)."""
        execution = self.execute(
            workflow_id, input, version=version, not_before=not_before, delay=delay
        )
        async with execution as events:
            async for _ in events:
                pass
        return await self._runs.get(events.run_id)
