"""Workflow runs: their node states and their event log."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.errors import NotFound
from orchestrator.model import (
    NodeRun,
    NodeStatus,
    Origin,
    RunStatus,
    WorkflowEvent,
    WorkflowEventType,
    WorkflowRun,
)
from orchestrator.store.schema import run_nodes, tasks, workflow_events, workflow_runs
from orchestrator.store.types import newer_first_after


def _node(row: Any) -> NodeRun:
    return NodeRun(
        node_id=row.node_id,
        status=NodeStatus(row.status),
        task_id=row.task_id,
        output=row.output,
        error=row.error,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _run(row: Any, nodes: Sequence[NodeRun] = ()) -> WorkflowRun:
    return WorkflowRun(
        id=row.id,
        workflow_id=row.workflow_id,
        version=row.version,
        owner_id=row.owner_id,
        status=RunStatus(row.status),
        input=row.input,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
        last_sequence=row.last_sequence,
        nodes=tuple(nodes),
        not_before=row.not_before,
        origin=Origin(row.schedule_id, row.scheduled_at) if row.schedule_id is not None else None,
        trace_context=row.trace_context,
    )


async def insert(conn: AsyncConnection, run: WorkflowRun) -> None:
    try:
        async with conn.begin_nested():
            await _insert_run(conn, run)
    except IntegrityError:
        # Its workflow was deleted between reading it and starting the run.
        raise NotFound(f"workflow {run.workflow_id} not found") from None


async def _insert_run(conn: AsyncConnection, run: WorkflowRun) -> None:
    await conn.execute(
        workflow_runs.insert().values(
            id=run.id,
            workflow_id=run.workflow_id,
            version=run.version,
            owner_id=run.owner_id,
            status=run.status,
            input=run.input,
            error=run.error,
            created_at=run.created_at,
            finished_at=None,
            last_sequence=run.last_sequence,
            not_before=run.not_before,
            schedule_id=run.origin.schedule_id if run.origin else None,
            scheduled_at=run.origin.scheduled_at if run.origin else None,
            trace_context=run.trace_context,
        )
    )
    await conn.execute(
        run_nodes.insert(),
        [
            {
                "run_id": run.id,
                "node_id": node.node_id,
                "status": node.status,
                "task_id": None,
                "output": None,
                "error": "",
            }
            for node in run.nodes
        ],
    )


async def get(conn: AsyncConnection, run_id: str, *, lock: bool = False) -> WorkflowRun | None:
    """The run with its nodes. `lock` holds the run row until the transaction
    ends (PostgreSQL), so decisions about one run are taken one at a time."""
    query = select(workflow_runs).where(workflow_runs.c.id == run_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    nodes = await conn.execute(
        select(run_nodes).where(run_nodes.c.run_id == run_id).order_by(run_nodes.c.node_id)
    )
    return _run(row, [_node(n) for n in nodes])


async def lock(conn: AsyncConnection, run_ids: Collection[str]) -> None:
    """Hold these runs' rows until the transaction ends (PostgreSQL; SQLite
    has one writer), taken in id order: two transactions that each need
    several runs never wait for each other in a circle."""
    if run_ids:
        await conn.execute(
            select(workflow_runs.c.id)
            .where(workflow_runs.c.id.in_(sorted(run_ids)))
            .order_by(workflow_runs.c.id)
            .with_for_update()
        )


async def lock_tasks(conn: AsyncConnection, run_id: str) -> None:
    """Hold the rows of the run's tasks until the transaction ends, taken in
    id order, for a change that must take them before the run itself."""
    await conn.execute(
        select(tasks.c.id)
        .where(tasks.c.id.in_(task_ids_of([run_id])))
        .order_by(tasks.c.id)
        .with_for_update()
    )


def task_ids_of(run_ids: Sequence[str]) -> Select[Any]:
    """The ids of these runs' tasks, found through the nodes that name them:
    tasks have no index on their run, and a node's task is set as it is
    created."""
    return select(run_nodes.c.task_id).where(
        run_nodes.c.run_id.in_(run_ids), run_nodes.c.task_id.is_not(None)
    )


async def page(
    conn: AsyncConnection,
    *,
    owner_id: str | None,
    workflow_id: str | None,
    status: RunStatus | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[WorkflowRun]:
    conditions = []
    if owner_id is not None:
        conditions.append(workflow_runs.c.owner_id == owner_id)
    if workflow_id is not None:
        conditions.append(workflow_runs.c.workflow_id == workflow_id)
    if status is not None:
        conditions.append(workflow_runs.c.status == status)
    if after is not None:
        conditions.append(newer_first_after(workflow_runs, after))
    query = (
        select(workflow_runs)
        .where(*conditions)
        .order_by(workflow_runs.c.created_at.desc(), workflow_runs.c.id.desc())
        .limit(limit)
    )
    return [_run(row) for row in await conn.execute(query)]


async def set_run(conn: AsyncConnection, run_id: str, **values: Any) -> None:
    await conn.execute(update(workflow_runs).where(workflow_runs.c.id == run_id).values(**values))


async def set_node(conn: AsyncConnection, run_id: str, node_id: str, **values: Any) -> None:
    await conn.execute(
        update(run_nodes)
        .where(run_nodes.c.run_id == run_id, run_nodes.c.node_id == node_id)
        .values(**values)
    )


async def append(conn: AsyncConnection, events: Sequence[WorkflowEvent]) -> None:
    if not events:
        return
    await conn.execute(
        workflow_events.insert(),
        [
            {
                "run_id": e.run_id,
                "sequence": e.sequence,
                "type": e.type.value,
                "status": e.status.value,
                "created_at": e.created_at,
                "node_id": e.node_id,
                "node_status": e.node_status.value if e.node_status else None,
                "task_id": e.task_id,
                "output": e.output,
                "message": e.message,
                "progress": e.progress,
            }
            for e in events
        ],
    )


def _event(row: Any) -> WorkflowEvent:
    return WorkflowEvent(
        run_id=row.run_id,
        sequence=row.sequence,
        type=WorkflowEventType(row.type),
        status=RunStatus(row.status),
        created_at=row.created_at,
        node_id=row.node_id,
        node_status=NodeStatus(row.node_status) if row.node_status else None,
        task_id=row.task_id,
        output=row.output,
        message=row.message,
        progress=row.progress,
    )


async def events_after(
    conn: AsyncConnection, run_id: str, after_sequence: int, limit: int
) -> list[WorkflowEvent]:
    query = (
        select(workflow_events)
        .where(workflow_events.c.run_id == run_id, workflow_events.c.sequence > after_sequence)
        .order_by(workflow_events.c.sequence)
        .limit(limit)
    )
    return [_event(row) for row in await conn.execute(query)]
