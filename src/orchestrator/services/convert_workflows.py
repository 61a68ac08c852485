"""Workflows, runs and their events between the domain and protobuf."""

from __future__ import annotations

from orchestrator.model import (
    ConcurrencyStrategy,
    Definition,
    EdgeSpec,
    NodeRun,
    NodeSpec,
    RunStatus,
    Workflow,
    WorkflowEvent,
    WorkflowRun,
)
from orchestrator.proto import tasks_pb2, workflows_pb2
from orchestrator.services.convert import (
    domain_enum,
    from_struct,
    struct,
    timestamp,
    wire_enum,
)
from orchestrator.services.convert_tasks import PERIOD_SECONDS, PERIOD_WIRE


def definition_domain(message: workflows_pb2.WorkflowDefinition) -> Definition:
    return Definition(
        nodes=tuple(
            NodeSpec(
                id=n.id,
                type=n.type,
                input=from_struct(n.input),
                input_expression=n.input_expression,
                max_attempts=n.max_attempts,
                timeout_seconds=n.timeout_seconds,
                description=n.description,
                concurrency_key_expression=n.concurrency_key_expression,
                concurrency_limit=n.concurrency_limit,
                concurrency_strategy=domain_enum(
                    tasks_pb2.ConcurrencyStrategy, n.concurrency_strategy, ConcurrencyStrategy
                )
                or ConcurrencyStrategy.QUEUE,
                rate_limit_bucket_expression=n.rate_limit_bucket_expression,
                rate_limit=n.rate_limit,
                rate_limit_period_seconds=PERIOD_SECONDS.get(n.rate_limit_period, 0),
            )
            for n in message.nodes
        ),
        edges=tuple(EdgeSpec(e.source, e.target, e.condition) for e in message.edges),
    )


def definition_message(definition: Definition) -> workflows_pb2.WorkflowDefinition:
    return workflows_pb2.WorkflowDefinition(
        nodes=[
            workflows_pb2.Node(
                id=n.id,
                type=n.type,
                input=struct(n.input),
                input_expression=n.input_expression,
                max_attempts=n.max_attempts,
                timeout_seconds=n.timeout_seconds,
                description=n.description,
                concurrency_key_expression=n.concurrency_key_expression,
                concurrency_limit=n.concurrency_limit,
                # Shown only with a key: QUEUE is also what an unset one means.
                concurrency_strategy=wire_enum(
                    tasks_pb2.ConcurrencyStrategy,
                    n.concurrency_strategy if n.concurrency_key_expression else None,
                ),
                rate_limit_bucket_expression=n.rate_limit_bucket_expression,
                rate_limit=n.rate_limit,
                rate_limit_period=PERIOD_WIRE.get(
                    n.rate_limit_period_seconds, tasks_pb2.RATE_LIMIT_PERIOD_UNSPECIFIED
                ),
            )
            for n in definition.nodes
        ],
        edges=[
            workflows_pb2.Edge(source=e.source, target=e.target, condition=e.condition)
            for e in definition.edges
        ],
    )


def workflow_message(workflow: Workflow) -> workflows_pb2.Workflow:
    return workflows_pb2.Workflow(
        id=workflow.id,
        name=workflow.name,
        version=workflow.version,
        definition=definition_message(workflow.definition),
        description=workflow.description,
        owner_id=workflow.owner_id,
        created_at=timestamp(workflow.created_at),
        updated_at=timestamp(workflow.updated_at),
    )


def run_status_domain(value: workflows_pb2.WorkflowRunStatus.ValueType) -> RunStatus | None:
    return domain_enum(workflows_pb2.WorkflowRunStatus, value, RunStatus)


def _node_message(node: NodeRun) -> workflows_pb2.NodeRun:
    return workflows_pb2.NodeRun(
        node_id=node.node_id,
        status=wire_enum(workflows_pb2.NodeStatus, node.status),
        task_id=node.task_id or "",
        output=struct(node.output),
        error=node.error,
        started_at=timestamp(node.started_at),
        finished_at=timestamp(node.finished_at),
    )


def run_message(run: WorkflowRun) -> workflows_pb2.WorkflowRun:
    return workflows_pb2.WorkflowRun(
        id=run.id,
        workflow_id=run.workflow_id,
        status=wire_enum(workflows_pb2.WorkflowRunStatus, run.status),
        nodes=[_node_message(n) for n in run.nodes],
        workflow_version=run.version,
        input=struct(run.input),
        error=run.error,
        owner_id=run.owner_id,
        created_at=timestamp(run.created_at),
        finished_at=timestamp(run.finished_at),
        last_sequence=run.last_sequence,
        not_before=timestamp(run.not_before),
        schedule_id=run.origin.schedule_id if run.origin else "",
        scheduled_at=timestamp(run.origin.scheduled_at if run.origin else None),
    )


def event_message(event: WorkflowEvent) -> workflows_pb2.WorkflowEvent:
    return workflows_pb2.WorkflowEvent(
        sequence=event.sequence,
        run_id=event.run_id,
        type=wire_enum(workflows_pb2.WorkflowEventType, event.type),
        node_id=event.node_id,
        status=wire_enum(workflows_pb2.WorkflowRunStatus, event.status),
        timestamp=timestamp(event.created_at),
        node_status=wire_enum(workflows_pb2.NodeStatus, event.node_status),
        task_id=event.task_id or "",
        output=struct(event.output),
        message=event.message,
        progress=event.progress,
    )
