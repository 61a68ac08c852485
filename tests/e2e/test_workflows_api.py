"""WorkflowService without workers (DESIGN §4-§5): validation over gRPC,
names and versions, ownership, paging and filters, deletion. Runs here
never need a worker: a run whose root is still queued stays RUNNING, and
one whose root's input cannot be computed fails as it starts.

The tests share one server (`shared_orchestrator`) and each works as a fresh
member, which sees only its own workflows, runs and tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from orchestrator.proto import workflows_pb2
from orchestrator.status import violations
from tests.e2e.conftest import Client, connect, read_rest, read_until
from tests.e2e.workflow_helpers import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_RUNNING,
    Flows,
    edge,
    fresh_member,
    is_event,
    kinds,
    node,
    statuses,
)
from tests.support.server import ServerProcess

QUEUED_FOREVER = node("waits", "sleep", {"seconds": 1})  # no worker serves it here
FAILS_AT_ONCE = node("broken", expression="{'x': input.missing}")


@pytest.fixture
async def user(shared_orchestrator: ServerProcess) -> AsyncIterator[Client]:
    async with fresh_member(shared_orchestrator) as client:
        yield client


async def test_create_reports_every_problem_as_a_field_violation(user: Client) -> None:
    flows = Flows(user)
    nodes = [
        node("a"),
        node("a"),
        node("b", ""),
        node("c", expression="{'x': "),
        node("d", expression="{'x': nodes.e.output.x}"),
        node("e"),
    ]
    edges = [edge("a", "ghost"), edge("e", "e"), edge("b", "c"), edge("c", "b")]

    with pytest.raises(aio.AioRpcError) as caught:
        await flows.create("broken", nodes, edges)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = {v.field: v.description for v in violations(caught.value)}
    assert set(found) == {
        "definition.nodes[1].id",
        "definition.nodes[2].type",
        "definition.edges[0].target",
        "definition.edges[1]",
        "definition.edges",
        "definition.nodes[3].input_expression",
    }, found
    assert found["definition.nodes[1].id"] == "duplicate node id 'a' (also nodes[0])"
    assert found["definition.edges[0].target"] == "unknown node 'ghost'"
    assert found["definition.edges[1]"] == "self-loop on 'e'"
    assert found["definition.edges"] in ("cycle: b → c → b", "cycle: c → b → c")
    assert "1:7" in found["definition.nodes[3].input_expression"]
    # The message a person reads names the problems too.
    assert "definition.nodes[1].id: duplicate node id 'a'" in (caught.value.details() or "")
    # Nothing was stored.
    assert await flows.list() == ([], "")

    # ValidateWorkflow and UpdateWorkflow answer the same.
    with pytest.raises(aio.AioRpcError) as validated:
        await flows.validate(nodes, edges)
    assert validated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field: v.description for v in violations(validated.value)} == found
    workflow = await flows.create("fine", [node("a")])
    with pytest.raises(aio.AioRpcError) as updated:
        await flows.update(workflow.id, nodes, edges)
    assert updated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field: v.description for v in violations(updated.value)} == found
    assert (await flows.get(workflow.id)).version == 1


async def test_validate_gives_an_order_that_respects_every_edge(user: Client) -> None:
    flows = Flows(user)
    nodes = [node("join"), node("right"), node("left"), node("start"), node("alone")]
    edges = [
        edge("start", "left"),
        edge("start", "right", "input.go"),
        edge("left", "join"),
        edge("right", "join"),
    ]

    order = await flows.validate(nodes, edges)

    assert sorted(order) == ["alone", "join", "left", "right", "start"]
    position = {node_id: i for i, node_id in enumerate(order)}
    assert all(position[e.source] < position[e.target] for e in edges)

    with pytest.raises(aio.AioRpcError) as empty:
        await flows.validate([])
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in violations(empty.value)] == [
        ("definition.nodes", "a workflow needs at least one node")
    ]


async def test_names_are_unique_per_owner_and_checked(user: Client) -> None:
    flows = Flows(user)
    await flows.create("report", [node("a")])

    with pytest.raises(aio.AioRpcError) as taken:
        await flows.create("report", [node("b")])
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "report" in (taken.value.details() or "")

    with pytest.raises(aio.AioRpcError) as bad:
        await flows.create("", [node("a")])
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in violations(bad.value)] == ["name"]


async def test_a_member_cannot_see_or_touch_anothers_workflows_and_runs(
    shared_orchestrator: ServerProcess, user: Client
) -> None:
    flows = Flows(user)
    workflow = await flows.create("mine", [QUEUED_FOREVER])
    call, started = await flows.start(workflow.id)

    async with fresh_member(shared_orchestrator) as other:
        theirs = Flows(other)
        attempts = {
            "GetWorkflow": theirs.get(workflow.id),
            "GetWorkflow v1": theirs.get(workflow.id, version=1),
            "UpdateWorkflow": theirs.update(workflow.id, [node("x")]),
            "DeleteWorkflow": theirs.delete(workflow.id),
            "ExecuteWorkflow": theirs.execute(workflow.id),
            "GetWorkflowRun": theirs.run(started.run_id),
            "WatchWorkflowRun": theirs.watch(started.run_id),
            "CancelWorkflowRun": theirs.cancel(started.run_id),
        }
        for name, attempt in attempts.items():
            with pytest.raises(aio.AioRpcError) as refused:
                await attempt
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND, name
            assert workflow.id in (refused.value.details() or "") or started.run_id in (
                refused.value.details() or ""
            ), name
        assert await theirs.list() == ([], "")
        assert await theirs.list_runs() == ([], "")
        assert await theirs.list_runs(workflow_id=workflow.id) == ([], "")
        # The run's node task is just as invisible.
        node_task = (await flows.run(started.run_id)).nodes[0].task_id
        with pytest.raises(aio.AioRpcError) as refused:
            await other.get(node_task)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        # Names are unique per owner: the other member may use the same one.
        homonym = await theirs.create("mine", [node("x")])
        assert homonym.id != workflow.id
        assert [w.id for w in (await theirs.list())[0]] == [homonym.id]

    # Nothing the other member tried changed the workflow or the run.
    run = await flows.run(started.run_id)
    assert run.status == RUN_RUNNING
    assert statuses(run) == {"waits": "QUEUED"}
    assert (await flows.get(workflow.id)).version == 1
    assert [w.id for w in (await flows.list())[0]] == [workflow.id]
    # Admins see everyone's.
    async with connect(shared_orchestrator) as admin:
        seen = Flows(admin)
        assert (await seen.get(homonym.id)).name == "mine"
        assert (await seen.run(started.run_id)).id == started.run_id
        everyone = {r.id for r in (await seen.list_runs(page_size=500))[0]}
        assert started.run_id in everyone
    await flows.cancel(started.run_id)
    assert kinds(await read_rest(call))[-1] == "RUN_CANCELLED"


async def test_list_workflows_pages_through_everything(user: Client) -> None:
    flows = Flows(user)
    created = [(await flows.create(f"wf-{i}", [node("a")])).id for i in range(5)]

    pages: list[list[str]] = []
    token = ""
    for _ in range(10):
        found, token = await flows.list(page_size=2, page_token=token)
        pages.append([w.id for w in found])
        if not token:
            break

    assert [len(p) for p in pages] == [2, 2, 1]
    # Newest first, each exactly once.
    assert [i for p in pages for i in p] == created[::-1]
    everything, last = await flows.list(page_size=100)
    assert ([w.id for w in everything], last) == (created[::-1], "")


async def test_list_runs_pages_and_filters_by_workflow_and_status(user: Client) -> None:
    flows = Flows(user)
    waiting = await flows.create("waiting", [QUEUED_FOREVER])
    failing = await flows.create("failing", [FAILS_AT_ONCE])
    running_ids, calls = [], []
    for _ in range(3):
        call, started = await flows.start(waiting.id)
        running_ids.append(started.run_id)
        calls.append(call)
    failed_ids = []
    for _ in range(2):
        events = await flows.execute(failing.id)
        assert kinds(events)[-1] == "RUN_FAILED"
        failed_ids.append(events[0].run_id)
    cancelled = await flows.cancel(running_ids[0])
    assert cancelled.status == RUN_CANCELLED
    assert kinds(await read_rest(calls[0]))[-1] == "RUN_CANCELLED"

    async def all_pages(page_size: int, **filters: object) -> list[list[str]]:
        pages, token = [], ""
        for _ in range(10):
            found, token = await flows.list_runs(page_size, token, **filters)
            pages.append([r.id for r in found])
            if not token:
                return pages
        raise AssertionError("ListWorkflowRuns never ran out of pages")

    async def ids(page_size: int, **filters: object) -> list[str]:
        return [i for page in await all_pages(page_size, **filters) for i in page]

    everything = [*running_ids, *failed_ids]
    pages = await all_pages(2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i for p in pages for i in p] == everything[::-1]  # newest first, each once
    assert sorted(await ids(2, workflow_id=waiting.id)) == sorted(running_ids)
    assert sorted(await ids(1, workflow_id=failing.id)) == sorted(failed_ids)
    assert sorted(await ids(1, status=RUN_RUNNING)) == sorted(running_ids[1:])
    assert await ids(5, status=RUN_CANCELLED) == [running_ids[0]]
    assert sorted(await ids(5, status=RUN_FAILED)) == sorted(failed_ids)
    assert await all_pages(5, workflow_id=failing.id, status=RUN_RUNNING) == [[]]
    found, _ = await flows.list_runs(5, status=RUN_CANCELLED)
    assert (found[0].workflow_id, found[0].status) == (waiting.id, RUN_CANCELLED)
    for run_id in running_ids[1:]:
        await flows.cancel(run_id)
    for call in calls[1:]:
        assert kinds(await read_rest(call))[-1] == "RUN_CANCELLED"


async def test_delete_is_refused_while_a_run_is_in_progress(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create("deletable", [QUEUED_FOREVER])
    call, started = await flows.start(workflow.id)
    await read_until(call, is_event("NODE_QUEUED", "waits"))

    with pytest.raises(aio.AioRpcError) as refused:
        await flows.delete(workflow.id)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "in progress" in (refused.value.details() or "")
    assert (await flows.get(workflow.id)).id == workflow.id
    await flows.cancel(started.run_id)
    assert kinds(await read_rest(call))[-1] == "RUN_CANCELLED"

    await flows.delete(workflow.id)

    for gone in (flows.get(workflow.id), flows.execute(workflow.id), flows.delete(workflow.id)):
        with pytest.raises(aio.AioRpcError) as missing:
            await gone
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert await flows.list() == ([], "")
    # Its runs went with it, and the name is free again.
    assert await flows.list_runs() == ([], "")
    again = await flows.create("deletable", [node("a")])
    assert (again.version, again.id != workflow.id) == (1, True)


async def test_a_run_with_no_worker_waits_queued_and_reports_it(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create("idle", [QUEUED_FOREVER, node("next")], [edge("waits", "next")])
    call, started = await flows.start(workflow.id, {"why": "no worker"})

    queued = await read_until(call, is_event("NODE_QUEUED", "waits"))

    assert queued[-1].node_status == workflows_pb2.NODE_STATUS_QUEUED
    run = await flows.run(started.run_id)
    assert statuses(run) == {"waits": "QUEUED", "next": "PENDING"}
    assert run.last_sequence == queued[-1].sequence
    task = await user.get(run.nodes[[n.node_id for n in run.nodes].index("waits")].task_id)
    assert (task.workflow_run_id, task.node_id, task.type) == (started.run_id, "waits", "sleep")
    await flows.cancel(started.run_id)
    assert kinds(await read_rest(call))[-1] == "RUN_CANCELLED"


async def test_a_definition_with_hundreds_of_problems_still_gets_invalid_argument(
    user: Client,
) -> None:
    # Violations travel in a trailer, which has a size limit: past a point
    # the server sends the first ones and says how many more there are.
    flows = Flows(user)
    nodes = [node(f"n{i}", "") for i in range(400)]  # 400 empty types, within MAX_NODES

    with pytest.raises(aio.AioRpcError) as caught:
        await flows.validate(nodes)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    found = violations(caught.value)
    assert 10 <= len(found) < 400
    assert all(v.field == f"definition.nodes[{i}].type" for i, v in enumerate(found[:-1]))
    assert found[-1].description == f"… and {400 - (len(found) - 1)} more problems"
