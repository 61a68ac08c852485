"""Workflows and their immutable versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.model import (
    ConcurrencyStrategy,
    Definition,
    EdgeSpec,
    NodeSpec,
    RunStatus,
    Workflow,
)
from orchestrator.store.schema import workflow_runs, workflow_versions, workflows
from orchestrator.store.types import newer_first_after


def definition_json(definition: Definition) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": n.id,
                "type": n.type,
                "input": n.input,
                "input_expression": n.input_expression,
                "max_attempts": n.max_attempts,
                "timeout_seconds": n.timeout_seconds,
                "description": n.description,
                **_limits_json(n),
            }
            for n in definition.nodes
        ],
        "edges": [
            {"source": e.source, "target": e.target, "condition": e.condition}
            for e in definition.edges
        ],
    }


def _limits_json(node: NodeSpec) -> dict[str, Any]:
    """A node's concurrency and rate limit, only when it has them: the
    definitions stored before them read the same."""
    found: dict[str, Any] = {}
    if node.concurrency_key_expression:
        found |= {
            "concurrency_key_expression": node.concurrency_key_expression,
            "concurrency_limit": node.concurrency_limit,
            "concurrency_strategy": node.concurrency_strategy.value,
        }
    if node.rate_limit_bucket_expression:
        found |= {
            "rate_limit_bucket_expression": node.rate_limit_bucket_expression,
            "rate_limit": node.rate_limit,
            "rate_limit_period_seconds": node.rate_limit_period_seconds,
        }
    return found


def _node(data: dict[str, Any]) -> NodeSpec:
    strategy = data.get("concurrency_strategy")
    if strategy is None:
        return NodeSpec(**data)
    return NodeSpec(**{**data, "concurrency_strategy": ConcurrencyStrategy(strategy)})


def definition_from_json(data: dict[str, Any]) -> Definition:
    return Definition(
        nodes=tuple(_node(node) for node in data["nodes"]),
        edges=tuple(EdgeSpec(**edge) for edge in data["edges"]),
    )


_JOINED = select(
    workflows.c.id,
    workflows.c.owner_id,
    workflows.c.name,
    workflows.c.created_at,
    workflow_versions.c.version,
    workflow_versions.c.description,
    workflow_versions.c.definition,
    workflow_versions.c.created_at.label("updated_at"),
).join(workflow_versions, workflow_versions.c.workflow_id == workflows.c.id)


def _workflow(row: Any) -> Workflow:
    return Workflow(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        version=row.version,
        description=row.description,
        definition=definition_from_json(row.definition),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def create(
    conn: AsyncConnection,
    owner_id: str,
    name: str,
    description: str,
    definition: Definition,
    now: datetime,
) -> Workflow | None:
    """The new workflow at version 1, or None if the owner has one by this name."""
    workflow_id = str(uuid.uuid4())
    try:
        async with conn.begin_nested():
            await conn.execute(
                workflows.insert().values(
                    id=workflow_id,
                    owner_id=owner_id,
                    name=name,
                    latest_version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        return None
    await _add_version(conn, workflow_id, 1, description, definition, now)
    return Workflow(workflow_id, owner_id, name, 1, description, definition, now, now)


async def _add_version(
    conn: AsyncConnection,
    workflow_id: str,
    version: int,
    description: str,
    definition: Definition,
    now: datetime,
) -> None:
    await conn.execute(
        workflow_versions.insert().values(
            workflow_id=workflow_id,
            version=version,
            description=description,
            definition=definition_json(definition),
            created_at=now,
        )
    )


async def add_version(
    conn: AsyncConnection,
    workflow_id: str,
    description: str,
    definition: Definition,
    now: datetime,
) -> int:
    """Store the next version; the row update serialises concurrent updates."""
    version: int = (
        await conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(latest_version=workflows.c.latest_version + 1, updated_at=now)
            .returning(workflows.c.latest_version)
        )
    ).scalar_one()
    await _add_version(conn, workflow_id, version, description, definition, now)
    return version


async def get(conn: AsyncConnection, workflow_id: str, version: int | None) -> Workflow | None:
    wanted = workflows.c.latest_version if version is None else version
    row = (
        await conn.execute(
            _JOINED.where(workflows.c.id == workflow_id, workflow_versions.c.version == wanted)
        )
    ).first()
    return _workflow(row) if row else None


async def page(
    conn: AsyncConnection,
    *,
    owner_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Workflow]:
    """Latest versions, newest workflow first, after the keyset cursor."""
    conditions = [workflow_versions.c.version == workflows.c.latest_version]
    if owner_id is not None:
        conditions.append(workflows.c.owner_id == owner_id)
    if after is not None:
        conditions.append(newer_first_after(workflows, after))
    query = (
        _JOINED.where(*conditions)
        .order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
        .limit(limit)
    )
    return [_workflow(row) for row in await conn.execute(query)]


async def remove(conn: AsyncConnection, workflow_id: str) -> bool:
    """Delete the workflow, its versions and its runs, unless a run is still
    going."""
    running = exists().where(
        workflow_runs.c.workflow_id == workflow_id,
        workflow_runs.c.status == RunStatus.RUNNING,
    )
    result = await conn.execute(delete(workflows).where(workflows.c.id == workflow_id, ~running))
    return result.rowcount == 1
