"""One workflow run as a transaction sees it: loaded (and locked) once,
changed in memory and in the database together, its events numbered on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.engine.graph import Plan
from orchestrator.model import (
    JsonObject,
    NodeRun,
    NodeStatus,
    RunStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowRun,
)
from orchestrator.store import runs as run_store


@dataclass
class RunState:
    run: WorkflowRun
    plan: Plan
    status: RunStatus
    sequence: int
    nodes: dict[str, NodeRun]
    events: list[WorkflowEvent]
    now: datetime
    error: str = ""
    touched: bool = field(default=False)

    @classmethod
    def of(
        cls, run: WorkflowRun, plan: Plan, events: list[WorkflowEvent], now: datetime
    ) -> RunState:
        return cls(
            run=run,
            plan=plan,
            status=run.status,
            sequence=run.last_sequence,
            nodes={n.node_id: n for n in run.nodes},
            events=events,
            now=now,
            error=run.error,
        )

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def running(self) -> bool:
        return self.status is RunStatus.RUNNING

    def emit(
        self,
        type: WorkflowEventType,
        node_id: str = "",
        *,
        task_id: str | None = None,
        output: JsonObject | None = None,
        message: str = "",
        progress: int = 0,
    ) -> None:
        self.sequence += 1
        self.touched = True
        node = self.nodes.get(node_id)
        self.events.append(
            WorkflowEvent(
                run_id=self.id,
                sequence=self.sequence,
                type=type,
                status=self.status,
                created_at=self.now,
                node_id=node_id,
                node_status=node.status if node else None,
                task_id=task_id or (node.task_id if node else None),
                output=output,
                message=message,
                progress=progress,
            )
        )

    async def set_node(self, conn: AsyncConnection, node_id: str, **values: Any) -> NodeRun:
        node = replace(self.nodes[node_id], **values)
        self.nodes[node_id] = node
        await run_store.set_node(conn, self.id, node_id, **values)
        return node

    def outputs(self) -> dict[str, JsonObject]:
        return {
            n.node_id: n.output or {}
            for n in self.nodes.values()
            if n.status is NodeStatus.SUCCEEDED
        }

    async def save(self, conn: AsyncConnection) -> None:
        """Write the run's own row: status, error, end time, last sequence."""
        if not self.touched:
            return
        finished = None if self.running else self.now
        await run_store.set_run(
            conn,
            self.id,
            status=self.status,
            error=self.error,
            finished_at=finished,
            last_sequence=self.sequence,
        )
        self.touched = False
