"""Delayed workflow runs, and nodes whose concurrency key and rate bucket
are CEL over the run (issue 11): a run with `not_before` or `delay` queues
its first nodes for that time; a node's key and bucket are computed as its
task is queued and refused at CreateWorkflow when they cannot work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from orchestrator.proto import tasks_pb2, workflows_pb2
from orchestrator.status import violations
from tests.e2e.conftest import (
    Client,
    WorkerFactory,
    fields_of,
    read_rest,
    read_until,
    refused,
    to_struct,
)
from tests.e2e.test_tasks_delayed import LATE_AT_MOST, at, delay, lateness, stamp
from tests.e2e.workflow_helpers import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_SUCCEEDED,
    Flows,
    edge,
    is_event,
    kinds,
    node,
    nodes_of,
)

QUEUE = tasks_pb2.CONCURRENCY_STRATEGY_QUEUE
PER_SECOND = tasks_pb2.RATE_LIMIT_PERIOD_SECOND


def start_call(
    flows: Flows, workflow_id: str, input: dict[str, Any] | None = None, **when: Any
) -> Any:
    return flows.stub.ExecuteWorkflow(
        workflows_pb2.ExecuteWorkflowRequest(
            workflow_id=workflow_id, input=to_struct(input or {}), **when
        ),
        metadata=flows.metadata,
        timeout=120,
    )


async def test_a_delayed_run_starts_its_first_nodes_at_its_time(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    flows = Flows(admin)
    workflow = await flows.create("later", [node("a"), node("b")], [edge("a", "b")])
    call = start_call(flows, workflow.id, {"n": 1}, delay=delay(1.5))
    first = await read_until(call, is_event("NODE_QUEUED", "a"))
    run_id = first[0].run_id

    waiting = await flows.run(run_id)
    assert waiting.HasField("not_before")
    assert not waiting.schedule_id and not waiting.HasField("scheduled_at")
    root = await admin.get(nodes_of(waiting)["a"].task_id)
    assert root.status == tasks_pb2.TASK_STATUS_QUEUED
    assert root.not_before == waiting.not_before

    events = first + await read_rest(call)
    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    run = await flows.run(run_id)
    assert run.status == RUN_SUCCEEDED
    a = await admin.get(nodes_of(run)["a"].task_id)
    assert timedelta(0) <= lateness(a) < LATE_AT_MOST
    b = await admin.get(nodes_of(run)["b"].task_id)
    assert at(b.started_at) >= at(a.finished_at)


async def test_a_delayed_run_can_be_cancelled_before_it_starts(admin: Client) -> None:
    flows = Flows(admin)
    workflow = await flows.create("cancelled-later", [node("a")])
    soon = stamp(datetime.now(UTC) + timedelta(minutes=5))
    call = start_call(flows, workflow.id, not_before=soon)
    first = await read_until(call, is_event("NODE_QUEUED", "a"))
    run = await flows.cancel(first[0].run_id, "not today")
    assert run.status == RUN_CANCELLED
    assert run.not_before == soon
    task = await admin.get(nodes_of(run)["a"].task_id)
    assert task.status == tasks_pb2.TASK_STATUS_CANCELLED and not task.HasField("started_at")


async def test_a_run_with_not_before_and_delay_is_refused(admin: Client) -> None:
    flows = Flows(admin)
    workflow = await flows.create("both", [node("a")])
    soon = stamp(datetime.now(UTC) + timedelta(minutes=1))
    error = await refused(
        read_rest(start_call(flows, workflow.id, not_before=soon, delay=delay(3)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fields_of(error) == ["delay"]
    runs, _ = await flows.list_runs()
    assert runs == []


async def test_a_node_gets_its_computed_concurrency_key_and_rate_bucket(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    flows = Flows(admin)
    limited = node(
        "limited",
        concurrency_key_expression="input.customer",
        concurrency_limit=2,
        rate_limit_bucket_expression="'api-' + nodes.first.output.region",
        rate_limit=50,
        rate_limit_period=PER_SECOND,
    )
    workflow = await flows.create(
        "keyed",
        [node("first", expression="{'region': input.region}"), limited],
        [edge("first", "limited")],
    )
    stored = nodes_of_definition(await flows.get(workflow.id))["limited"]
    assert stored.concurrency_key_expression == "input.customer"
    assert (stored.concurrency_limit, stored.concurrency_strategy) == (2, QUEUE)
    assert stored.rate_limit_bucket_expression == "'api-' + nodes.first.output.region"
    assert (stored.rate_limit, stored.rate_limit_period) == (50, PER_SECOND)

    events = await read_rest(start_call(flows, workflow.id, {"customer": "acme", "region": "eu"}))
    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    run = await flows.run(events[0].run_id)
    task = await admin.get(nodes_of(run)["limited"].task_id)
    assert (task.concurrency_key, task.concurrency_limit) == ("acme", 2)
    assert task.concurrency_strategy == QUEUE
    assert (task.rate_limit_bucket, task.rate_limit, task.rate_limit_period) == (
        "api-eu",
        50,
        PER_SECOND,
    )
    first = await admin.get(nodes_of(run)["first"].task_id)
    assert not first.concurrency_key and not first.rate_limit_bucket


def nodes_of_definition(workflow: workflows_pb2.Workflow) -> dict[str, workflows_pb2.Node]:
    return {n.id: n for n in workflow.definition.nodes}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        (
            {"concurrency_key_expression": "input.", "concurrency_limit": 1},
            "concurrency_key_expression",
            "",
        ),
        (
            {"concurrency_key_expression": "1.0 + 2.0", "concurrency_limit": 1},
            "concurrency_key_expression",
            "must yield a string",
        ),
        (
            {"concurrency_key_expression": "user.id", "concurrency_limit": 1},
            "concurrency_key_expression",
            "unknown variable",
        ),
        ({"concurrency_limit": 3}, "concurrency_limit", "needs a concurrency_key_expression"),
        (
            {"concurrency_strategy": tasks_pb2.CONCURRENCY_STRATEGY_CANCEL_NEWEST},
            "concurrency_strategy",
            "needs a concurrency_key_expression",
        ),
        ({"concurrency_key_expression": "input.k"}, "concurrency_limit", "must be in [1,"),
        (
            {
                "rate_limit_bucket_expression": "nodes.nobody.output.x",
                "rate_limit": 1,
                "rate_limit_period": PER_SECOND,
            },
            "rate_limit_bucket_expression",
            "does not run before",
        ),
        (
            {"rate_limit_bucket_expression": "'b'", "rate_limit": 5},
            "rate_limit_period",
            "second, minute or hour",
        ),
        (
            {"rate_limit": 5, "rate_limit_period": PER_SECOND},
            "rate_limit",
            "needs a rate_limit_bucket_expression",
        ),
        ({"rate_limit_period": PER_SECOND}, "rate_limit_period", "needs a rate_limit_bucket"),
    ],
)
async def test_bad_limits_are_refused_at_create_workflow(
    admin: Client, fields: dict[str, Any], field: str, words: str
) -> None:
    flows = Flows(admin)
    error = await refused(flows.create("bad", [node("a", **fields)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = violations(error)
    assert [v.field for v in found] == [f"definition.nodes[0].{field}"], found
    assert words in found[0].description
    listed, _ = await flows.list()
    assert listed == []


async def test_a_key_that_fails_at_run_time_fails_its_node(
    admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "2")
    flows = Flows(admin)
    workflow = await flows.create(
        "missing-key",
        [node("a", concurrency_key_expression="input.customer", concurrency_limit=1)],
    )
    events = await read_rest(start_call(flows, workflow.id, {"other": 1}))
    assert kinds(events)[-1] == "RUN_FAILED"
    run = await flows.run(events[0].run_id)
    assert run.status == RUN_FAILED
    a = nodes_of(run)["a"]
    assert not a.task_id
    assert "'input.customer'" in a.error and "customer" in a.error
    # A key of the wrong kind fails the same way, naming what it got.
    numbered = await read_rest(start_call(flows, workflow.id, {"customer": 7}))
    run = await flows.run(numbered[0].run_id)
    assert "not a string" in nodes_of(run)["a"].error
    # A NUL is fine in an input string but not in a key: the node fails
    # (on PostgreSQL the insert would have refused the whole transaction).
    nul = await read_rest(start_call(flows, workflow.id, {"customer": "a\u0000b"}))
    assert kinds(nul)[-1] == "RUN_FAILED"
    run = await flows.run(nul[0].run_id)
    assert "NUL" in nodes_of(run)["a"].error
