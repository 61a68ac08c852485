"""`client.runs`: the workflow runs of WorkflowService."""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator.client import _convert
from orchestrator.client._streams import RunStream
from orchestrator.client._transport import Transport
from orchestrator.client._values import Page, WorkflowRun
from orchestrator.model import RunStatus
from orchestrator.proto import workflows_pb2


class Runs:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def get(self, run_id: str) -> WorkflowRun:
        request = workflows_pb2.GetWorkflowRunRequest(id=run_id)
        reply = await self._transport.unary(
            lambda s: s.workflows.GetWorkflowRun, request, idempotent=True
        )
        return _convert.run(reply)

    async def list(
        self,
        *,
        workflow_id: str = "",
        status: RunStatus | str | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[WorkflowRun]:
        """One page of runs, newest first, of one workflow if given."""
        request = workflows_pb2.ListWorkflowRunsRequest(
            workflow_id=workflow_id,
            status=workflows_pb2.WorkflowRunStatus.Value(
                f"WORKFLOW_RUN_STATUS_{RunStatus(status).value}"
            )
            if status
            else workflows_pb2.WORKFLOW_RUN_STATUS_UNSPECIFIED,
            page_size=page_size,
            page_token=page_token,
        )
        reply = await self._transport.unary(
            lambda s: s.workflows.ListWorkflowRuns, request, idempotent=True
        )
        return Page(tuple(_convert.run(r) for r in reply.runs), reply.next_page_token)

    async def list_all(
        self, *, workflow_id: str = "", status: RunStatus | str | None = None
    ) -> AsyncIterator[WorkflowRun]:
        token = ""
        while True:
            page = await self.list(
                workflow_id=workflow_id, status=status, page_size=500, page_token=token
            )
            for run in page.items:
                yield run
            token = page.next_page_token
            if not token:
                return

    def watch(self, run_id: str, after_sequence: int = 0) -> RunStream:
        """The run's events after `after_sequence`, then live ones, until it
        ends; resumed from the last one seen if the connection drops."""
        return RunStream(self._transport, run_id, after_sequence)

    async def cancel(self, run_id: str, reason: str = "") -> WorkflowRun:
        """Stop the run: running nodes are cancelled, the rest never start."""
        request = workflows_pb2.CancelWorkflowRunRequest(id=run_id, reason=reason)
        reply = await self._transport.unary(
            lambda s: s.workflows.CancelWorkflowRun, request, idempotent=False
        )
        return _convert.run(reply)

    async def wait(self, run_id: str) -> WorkflowRun:
        """The run once it has ended."""
        run = await self.get(run_id)
        if run.finished:
            return run
        async with self.watch(run_id, run.last_sequence) as events:
            async for _ in events:
                pass
        return await self.get(run_id)
