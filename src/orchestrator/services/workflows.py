"""orchestrator.workflows.WorkflowService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from orchestrator.auth import identity
from orchestrator.engine.workflows import WorkflowEngine
from orchestrator.proto import workflows_pb2, workflows_pb2_grpc
from orchestrator.services.convert import from_struct
from orchestrator.services.convert_tasks import start_time
from orchestrator.services.convert_workflows import (
    definition_domain,
    event_message,
    run_message,
    run_status_domain,
    workflow_message,
)
from orchestrator.services.streams import Streams
from orchestrator.store.types import utcnow

Context = aio.ServicerContext[Any, Any]


class WorkflowService(workflows_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: WorkflowEngine, streams: Streams) -> None:
        self._engine = engine
        self._streams = streams

    async def CreateWorkflow(
        self, request: workflows_pb2.CreateWorkflowRequest, context: Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._engine.create(
            identity.current(),
            request.name,
            request.description,
            definition_domain(request.definition),
        )
        return workflow_message(workflow)

    async def GetWorkflow(
        self, request: workflows_pb2.GetWorkflowRequest, context: Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._engine.get(identity.current(), request.id, request.version)
        return workflow_message(workflow)

    async def ListWorkflows(
        self, request: workflows_pb2.ListWorkflowsRequest, context: Context
    ) -> workflows_pb2.ListWorkflowsResponse:
        found, token = await self._engine.list_workflows(
            identity.current(), request.page_size, request.page_token
        )
        return workflows_pb2.ListWorkflowsResponse(
            workflows=[workflow_message(w) for w in found], next_page_token=token
        )

    async def UpdateWorkflow(
        self, request: workflows_pb2.UpdateWorkflowRequest, context: Context
    ) -> workflows_pb2.Workflow:
        workflow = await self._engine.update(
            identity.current(),
            request.id,
            request.description,
            definition_domain(request.definition),
        )
        return workflow_message(workflow)

    async def DeleteWorkflow(
        self, request: workflows_pb2.DeleteWorkflowRequest, context: Context
    ) -> workflows_pb2.DeleteWorkflowResponse:
        await self._engine.delete(identity.current(), request.id)
        return workflows_pb2.DeleteWorkflowResponse()

    async def ValidateWorkflow(
        self, request: workflows_pb2.ValidateWorkflowRequest, context: Context
    ) -> workflows_pb2.ValidateWorkflowResponse:
        order = self._engine.validate(definition_domain(request.definition))
        return workflows_pb2.ValidateWorkflowResponse(order=order)

    async def ExecuteWorkflow(
        self, request: workflows_pb2.ExecuteWorkflowRequest, context: Context
    ) -> AsyncIterator[workflows_pb2.WorkflowEvent]:
        caller = identity.current()
        run = await self._engine.start(
            caller,
            request.workflow_id,
            request.version,
            from_struct(request.input),
            not_before=start_time(request, utcnow()),
        )
        events = self._engine.follow(caller, run.id, 0)
        async for event in self._streams.guard(caller, events):
            yield event_message(event)

    async def GetWorkflowRun(
        self, request: workflows_pb2.GetWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        return run_message(await self._engine.get_run(identity.current(), request.id))

    async def ListWorkflowRuns(
        self, request: workflows_pb2.ListWorkflowRunsRequest, context: Context
    ) -> workflows_pb2.ListWorkflowRunsResponse:
        found, token = await self._engine.list_runs(
            identity.current(),
            request.workflow_id or None,
            run_status_domain(request.status),
            request.page_size,
            request.page_token,
        )
        return workflows_pb2.ListWorkflowRunsResponse(
            runs=[run_message(r) for r in found], next_page_token=token
        )

    async def WatchWorkflowRun(
        self, request: workflows_pb2.WatchWorkflowRunRequest, context: Context
    ) -> AsyncIterator[workflows_pb2.WorkflowEvent]:
        caller = identity.current()
        events = self._engine.follow(caller, request.id, request.after_sequence)
        async for event in self._streams.guard(caller, events):
            yield event_message(event)

    async def CancelWorkflowRun(
        self, request: workflows_pb2.CancelWorkflowRunRequest, context: Context
    ) -> workflows_pb2.WorkflowRun:
        run = await self._engine.cancel_run(identity.current(), request.id, request.reason)
        return run_message(run)
