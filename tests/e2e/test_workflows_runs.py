"""Workflow runs end to end (DESIGN §4-§5): a real server, the demo worker
(or part of it), ExecuteWorkflow and WatchWorkflowRun streams, and the tasks
that run the nodes.

Most tests share one server and one demo worker (the module-scoped
`shared_orchestrator` and `demo_worker`, to keep the module fast) and each
works as a fresh member, which sees only its own workflows, runs and tasks.
A test that needs workers of its own (the failing-node test) gets a server
of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from orchestrator.proto import tasks_pb2, workflows_pb2
from tests.e2e.conftest import (
    Client,
    WorkerFactory,
    WorkerProcess,
    read_rest,
    read_until,
    to_dict,
)
from tests.e2e.conftest import kinds as task_kinds
from tests.e2e.workflow_helpers import (
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_RUNNING,
    RUN_SUCCEEDED,
    Flows,
    count_of,
    edge,
    fresh_member,
    is_event,
    kind,
    kinds,
    node,
    node_kinds,
    nodes_of,
    statuses,
)
from tests.support.server import ServerProcess


@pytest.fixture
async def user(
    shared_orchestrator: ServerProcess, demo_worker: WorkerProcess
) -> AsyncIterator[Client]:
    """A fresh member on the module's server, which has a demo worker."""
    async with fresh_member(shared_orchestrator) as client:
        yield client


ECHO_SLEEP_WORKER = "tests.e2e.workflow_helpers:echo_sleep_worker"
FAIL_WORKER = "tests.e2e.workflow_helpers:fail_worker"
RAN = ["NODE_QUEUED", "NODE_STARTED", "NODE_SUCCEEDED", "CHECKPOINT_SAVED"]


async def test_a_diamond_passes_data_from_both_branches(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create(
        "diamond",
        [
            node("a", input={"x": 3}),
            node("b", expression="{'y': nodes.a.output.x * 2.0}"),
            node("c", input={"keep": "me"}, expression="{'z': nodes.a.output.x + input.k}"),
            node(
                "d",
                input={"total": "overridden", "tag": "d"},
                expression="{'total': nodes.b.output.y + nodes.c.output.z,"
                " 'parts': [nodes.b.output.y, nodes.c.output.z, nodes.c.output.keep]}",
            ),
        ],
        [edge("a", "b"), edge("a", "c"), edge("b", "d"), edge("c", "d")],
    )

    events = await flows.execute(workflow.id, {"k": 10})

    assert kinds(events)[0] == "RUN_STARTED" and kinds(events)[-1] == "RUN_SUCCEEDED"
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    run_id = events[0].run_id
    assert {e.run_id for e in events} == {run_id}
    for node_id in "abcd":
        assert node_kinds(events, node_id) == RAN, node_id
    # d is queued only once both b and c have succeeded.
    position = {(e.node_id, kind(e)): i for i, e in enumerate(events)}
    assert position[("d", "NODE_QUEUED")] > position[("b", "NODE_SUCCEEDED")]
    assert position[("d", "NODE_QUEUED")] > position[("c", "NODE_SUCCEEDED")]
    final_output = {"total": 19.0, "tag": "d", "parts": [6.0, 13.0, "me"]}
    succeeded = {e.node_id: to_dict(e.output) for e in events if e.node_id and e.HasField("output")}
    assert succeeded == {
        "a": {"x": 3},
        "b": {"y": 6.0},
        "c": {"keep": "me", "z": 13.0},
        "d": final_output,
    }

    run = await flows.run(run_id)
    assert run.status == RUN_SUCCEEDED
    assert (run.workflow_id, run.workflow_version, run.error) == (workflow.id, 1, "")
    assert to_dict(run.input) == {"k": 10}
    assert run.HasField("finished_at")
    assert run.last_sequence == events[-1].sequence
    assert statuses(run) == dict.fromkeys("abcd", "SUCCEEDED")
    by_id = nodes_of(run)
    assert to_dict(by_id["d"].output) == final_output
    assert by_id["d"].started_at.ToDatetime() >= by_id["b"].finished_at.ToDatetime()
    assert by_id["d"].started_at.ToDatetime() >= by_id["c"].finished_at.ToDatetime()
    for node_id in "abcd":
        task = await user.get(by_id[node_id].task_id)
        assert (task.workflow_run_id, task.node_id, task.type) == (run_id, node_id, "echo")
        assert task.status == tasks_pb2.TASK_STATUS_SUCCEEDED
        assert to_dict(task.output) == to_dict(by_id[node_id].output)
    d_task = await user.get(by_id["d"].task_id)
    assert to_dict(d_task.input) == final_output
    # Node events carry the node's task and status; the run's status is RUNNING until the end.
    for event in events:
        if event.node_id:
            assert event.task_id == by_id[event.node_id].task_id
        assert event.status == (RUN_SUCCEEDED if event is events[-1] else RUN_RUNNING)
    assert {e.node_status for e in events if kind(e) in ("NODE_SUCCEEDED", "CHECKPOINT_SAVED")} == {
        workflows_pb2.NODE_STATUS_SUCCEEDED
    }


async def test_a_false_condition_skips_a_branch_and_the_run_succeeds(user: Client) -> None:
    flows = Flows(user)
    # a ─[go]→ b → c ─┐
    # └──────→ d ─────┴→ e   (e: one parent skipped, the other succeeded: e runs)
    # a ─[!go]→ f            (f runs)
    workflow = await flows.create(
        "branches",
        [
            node("a", expression="{'go': input.go}"),
            node("b"),
            node("c"),
            node("d", input={"d": True}),
            node("e", expression="{'seen': nodes.d.output.d}"),
            node("f", input={"f": True}),
        ],
        [
            edge("a", "b", "nodes.a.output.go"),
            edge("b", "c"),
            edge("c", "e"),
            edge("a", "d"),
            edge("d", "e"),
            edge("a", "f", "!nodes.a.output.go"),
        ],
    )

    events = await flows.execute(workflow.id, {"go": False})

    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    assert node_kinds(events, "b") == ["NODE_SKIPPED"]
    assert node_kinds(events, "c") == ["NODE_SKIPPED"]
    for node_id in "adef":
        assert node_kinds(events, node_id) == RAN, node_id
    skipped = [e for e in events if kind(e) == "NODE_SKIPPED"]
    assert all(e.task_id == "" for e in skipped)
    run = await flows.run(events[0].run_id)
    assert run.status == RUN_SUCCEEDED
    assert statuses(run) == {
        "a": "SUCCEEDED",
        "b": "SKIPPED",
        "c": "SKIPPED",
        "d": "SUCCEEDED",
        "e": "SUCCEEDED",
        "f": "SUCCEEDED",
    }
    by_id = nodes_of(run)
    assert by_id["b"].task_id == "" and by_id["c"].task_id == ""
    assert to_dict(by_id["e"].output) == {"seen": True}
    # No task was ever made for the skipped nodes.
    run_tasks = {t.node_id for t in (await user.list(page_size=100)).tasks}
    assert run_tasks == {"a", "d", "e", "f"}

    # The same workflow the other way round: b and c run, f is skipped.
    events = await flows.execute(workflow.id, {"go": True})
    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    assert statuses(await flows.run(events[0].run_id)) == {
        **dict.fromkeys("abcde", "SUCCEEDED"),
        "f": "SKIPPED",
    }


async def test_a_success_whose_children_are_all_skipped_still_checkpoints(user: Client) -> None:
    # Skipping the last node ends the run: the checkpoint still comes first.
    flows = Flows(user)
    workflow = await flows.create("skip-last", [node("a"), node("b")], [edge("a", "b", "false")])

    events = await flows.execute(workflow.id)

    assert kinds(events) == ["RUN_STARTED", *RAN[:3], "NODE_SKIPPED", RAN[3], "RUN_SUCCEEDED"]
    assert [e.node_id for e in events] == ["", "a", "a", "a", "b", "a", ""]


async def test_fan_out_to_50_nodes_and_fan_in(user: Client) -> None:
    flows = Flows(user)
    width = 50
    parts = [f"p{i:02d}" for i in range(width)]
    workflow = await flows.create(
        "fan",
        [
            node("start", expression="{'base': input.base}"),
            *(
                node(p, input={"i": i}, expression="{'v': nodes.start.output.base + 1.0}")
                for i, p in enumerate(parts)
            ),
            node(
                "join",
                expression="{'sum': "
                + " + ".join(f"nodes.{p}.output.i + nodes.{p}.output.v" for p in parts)
                + "}",
            ),
        ],
        [edge("start", p) for p in parts] + [edge(p, "join") for p in parts],
    )

    events = await flows.execute(workflow.id, {"base": 100})

    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    assert count_of(events, "NODE_SUCCEEDED") == dict.fromkeys(["start", *parts, "join"], 1)
    join_queued = kinds(events).index("NODE_QUEUED", [e.node_id for e in events].index("join"))
    assert all(
        i < join_queued
        for i, e in enumerate(events)
        if e.node_id in parts and kind(e) == "NODE_SUCCEEDED"
    )
    expected = sum(range(width)) + width * 101.0
    assert to_dict(events[-3].output) == {"sum": expected}, kinds(events[-3:])
    run = await flows.run(events[0].run_id)
    assert to_dict(nodes_of(run)["join"].output) == {"sum": expected}
    assert set(statuses(run).values()) == {"SUCCEEDED"}
    assert len({n.task_id for n in run.nodes}) == width + 2


async def test_a_failing_node_fails_the_run_and_cancels_the_rest(
    admin: Client, start_worker: WorkerFactory
) -> None:
    # `fail` is served only by a worker started once `slow` runs, so `slow`
    # is surely running when `boom` fails.
    main_worker = await start_worker(ECHO_SLEEP_WORKER)
    flows = Flows(admin)
    workflow = await flows.create(
        "failing",
        [
            node("slow", "sleep", {"seconds": 60}),
            node("boom", "fail", {"message": "boom: the disk is on fire", "permanent": True}),
            node("after_boom"),
            node("deeper"),
            node("after_slow"),
        ],
        [edge("boom", "after_boom"), edge("after_boom", "deeper"), edge("slow", "after_slow")],
    )
    call, started = await flows.start(workflow.id)
    await read_until(call, is_event("NODE_STARTED", "slow"))
    await start_worker(FAIL_WORKER)

    rest = await read_rest(call)

    assert kinds(rest)[-1] == "RUN_FAILED"
    assert rest[-1].status == RUN_FAILED
    assert "node 'boom' failed: boom: the disk is on fire" in rest[-1].message
    failed = [e for e in rest if e.node_id == "boom" and kind(e) == "NODE_FAILED"]
    assert [e.message for e in failed] == ["boom: the disk is on fire"]
    run = await flows.run(started.run_id)
    assert run.status == RUN_FAILED
    assert "boom: the disk is on fire" in run.error
    assert statuses(run) == {
        "slow": "CANCELLED",
        "boom": "FAILED",
        "after_boom": "CANCELLED",
        "deeper": "CANCELLED",
        "after_slow": "CANCELLED",
    }
    by_id = nodes_of(run)
    # The children never ran: no task was made for them.
    for node_id in ("after_boom", "deeper", "after_slow"):
        assert by_id[node_id].task_id == "", node_id
        assert "NODE_QUEUED" not in node_kinds(rest, node_id)
    assert {t.node_id for t in (await admin.list(page_size=100)).tasks} == {"slow", "boom"}
    boom = await admin.get(by_id["boom"].task_id)
    assert (boom.status, boom.error, boom.attempt) == (
        tasks_pb2.TASK_STATUS_FAILED,
        "boom: the disk is on fire",
        1,
    )
    # The running sibling was cancelled at its worker.
    slow = await admin.get(by_id["slow"].task_id)
    assert slow.status == tasks_pb2.TASK_STATUS_CANCELLED
    assert "node 'boom' failed" in slow.error
    await asyncio.to_thread(main_worker.wait_for_log, rf"task {slow.id} cancelled: ", 15)
    assert task_kinds(await admin.watch(slow.id))[-1] == "CANCELLED"


async def test_cancel_mid_run(demo_worker: WorkerProcess, user: Client) -> None:
    worker = demo_worker
    flows = Flows(user)
    workflow = await flows.create(
        "to-cancel",
        [node("first"), node("nap", "sleep", {"seconds": 60}), node("never")],
        [edge("first", "nap"), edge("nap", "never")],
    )
    call, started = await flows.start(workflow.id)
    await read_until(call, is_event("NODE_STARTED", "nap"))

    cancelled = await flows.cancel(started.run_id, reason="changed my mind")

    assert cancelled.status == RUN_CANCELLED
    assert statuses(cancelled) == {"first": "SUCCEEDED", "nap": "CANCELLED", "never": "CANCELLED"}
    rest = await read_rest(call)
    assert kinds(rest)[-1] == "RUN_CANCELLED"
    assert rest[-1].message == "changed my mind"
    assert {e.node_id for e in rest if kind(e) == "NODE_CANCELLED"} == {"nap", "never"}
    by_id = nodes_of(cancelled)
    assert by_id["never"].task_id == ""
    nap = await user.get(by_id["nap"].task_id)
    assert (nap.status, nap.error) == (tasks_pb2.TASK_STATUS_CANCELLED, "changed my mind")
    await asyncio.to_thread(worker.wait_for_log, rf"task {nap.id} cancelled: changed my mind", 15)
    # A finished run cannot be cancelled again.
    with pytest.raises(aio.AioRpcError) as again:
        await flows.cancel(started.run_id)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_dropping_the_stream_does_not_cancel_the_run(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create(
        "dropped", [node("a", "sleep", {"seconds": 0.5}), node("b")], [edge("a", "b")]
    )
    call, started = await flows.start(workflow.id)
    await read_until(call, is_event("NODE_STARTED", "a"))

    call.cancel()

    events = await flows.watch(started.run_id)
    assert kinds(events)[-1] == "RUN_SUCCEEDED"
    assert statuses(await flows.run(started.run_id)) == {"a": "SUCCEEDED", "b": "SUCCEEDED"}


async def test_a_node_is_retried_before_it_fails_the_run(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create(
        "flaky",
        [node("shaky", "fail", {"message": "not today"}, max_attempts=2), node("next")],
        [edge("shaky", "next")],
    )

    events = await flows.execute(workflow.id)

    assert node_kinds(events, "shaky") == [
        "NODE_QUEUED",
        "NODE_STARTED",
        "NODE_QUEUED",
        "NODE_STARTED",
        "NODE_FAILED",
    ]
    shaky = [e for e in events if e.node_id == "shaky"]
    assert [e.message for e in shaky] == ["", "", "not today", "", "not today"]
    assert kinds(events)[-1] == "RUN_FAILED"
    run = await flows.run(events[0].run_id)
    assert run.error == "node 'shaky' failed: not today"
    task = await user.get(nodes_of(run)["shaky"].task_id)
    assert (task.attempt, task.max_attempts, task.status) == (2, 2, tasks_pb2.TASK_STATUS_FAILED)


async def test_cancelling_a_node_task_fails_the_run(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create(
        "task-cancelled",
        [node("nap", "sleep", {"seconds": 60}), node("next")],
        [edge("nap", "next")],
    )
    call, started = await flows.start(workflow.id)
    seen = await read_until(call, is_event("NODE_STARTED", "nap"))

    await user.cancel(seen[-1].task_id, reason="not that one")

    rest = await read_rest(call)
    assert kinds(rest)[-1] == "RUN_FAILED"
    assert node_kinds(rest, "nap")[-1] == "NODE_CANCELLED"
    run = await flows.run(started.run_id)
    assert run.error == "node 'nap' was cancelled: not that one"
    assert statuses(run) == {"nap": "CANCELLED", "next": "CANCELLED"}


async def test_a_run_keeps_its_version_while_the_workflow_changes(user: Client) -> None:
    flows = Flows(user)
    v1_nodes = [
        node("first", "sleep", expression="{'seconds': input.seconds}"),
        node("second", input={"v": 1}),
    ]
    v1_edges = [edge("first", "second")]
    workflow = await flows.create("versioned", v1_nodes, v1_edges, description="one")
    assert workflow.version == 1
    call, started = await flows.start(workflow.id, {"seconds": 1.0})
    await read_until(call, is_event("NODE_STARTED", "first"))

    v2 = await flows.update(
        workflow.id,
        [node("alpha", input={"v": 2}), node("beta", expression="{'v': nodes.alpha.output.v}")],
        [edge("alpha", "beta")],
        description="two",
    )

    assert (v2.id, v2.version, v2.name, v2.description) == (workflow.id, 2, "versioned", "two")
    rest = await read_rest(call)
    assert kinds(rest)[-1] == "RUN_SUCCEEDED"
    assert {e.node_id for e in rest} - {""} == {"first", "second"}
    old_run = await flows.run(started.run_id)
    assert old_run.workflow_version == 1
    assert statuses(old_run) == {"first": "SUCCEEDED", "second": "SUCCEEDED"}
    assert to_dict(nodes_of(old_run)["second"].output) == {"v": 1}

    new_events = await flows.execute(workflow.id)
    assert kinds(new_events)[-1] == "RUN_SUCCEEDED"
    new_run = await flows.run(new_events[0].run_id)
    assert new_run.workflow_version == 2
    assert statuses(new_run) == {"alpha": "SUCCEEDED", "beta": "SUCCEEDED"}
    assert to_dict(nodes_of(new_run)["beta"].output) == {"v": 2}

    # An older version can still be run on purpose.
    pinned = await flows.execute(workflow.id, {"seconds": 0.0}, version=1)
    assert kinds(pinned)[-1] == "RUN_SUCCEEDED"
    assert (await flows.run(pinned[0].run_id)).workflow_version == 1

    first = await flows.get(workflow.id, version=1)
    assert (first.version, first.description) == (1, "one")
    assert [n.id for n in first.definition.nodes] == ["first", "second"]
    assert first.definition.nodes[0].input_expression == "{'seconds': input.seconds}"
    assert [(e.source, e.target) for e in first.definition.edges] == [("first", "second")]
    latest = await flows.get(workflow.id)
    assert latest.version == 2
    assert [n.id for n in latest.definition.nodes] == ["alpha", "beta"]
    assert latest.created_at == workflow.created_at
    assert latest.updated_at.ToDatetime() >= first.updated_at.ToDatetime()
    with pytest.raises(aio.AioRpcError) as missing:
        await flows.get(workflow.id, version=3)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as missing:
        await flows.execute(workflow.id, version=3)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_replays_what_execute_streamed(user: Client) -> None:
    flows = Flows(user)
    workflow = await flows.create(
        "watched",
        [
            node("a", "sleep", {"seconds": 1.2}),
            node("b", expression="{'from_a': nodes.a.output.slept}"),
            node("c", input={"c": 1}),
        ],
        [edge("a", "b"), edge("a", "c", "false")],
    )
    call, started = await flows.start(workflow.id)
    # A watcher that joins mid-run sees the same events as one from the start.
    so_far = await read_until(call, is_event("NODE_STARTED", "a"))
    live = asyncio.ensure_future(flows.watch(started.run_id, 0))
    executed = [started, *so_far, *await read_rest(call)]
    assert kinds(executed)[-1] == "RUN_SUCCEEDED"
    # The sleep of 1.2 s reports progress, which the run passes on.
    assert "NODE_PROGRESS" in node_kinds(executed, "a")

    assert await live == executed
    assert await flows.watch(started.run_id, 0) == executed
    for k in (1, 5, len(executed) - 1):
        assert await flows.watch(started.run_id, k) == executed[k:], k


async def test_watch_from_the_last_event_of_a_finished_run_ends_at_once(user: Client) -> None:
    flows = Flows(user)
    # The root's input cannot be computed: the run fails as it starts, no worker needed.
    workflow = await flows.create("short", [node("only", expression="{'x': input.missing}")])
    events = await flows.execute(workflow.id)
    assert kinds(events) == ["RUN_STARTED", "NODE_FAILED", "RUN_FAILED"]

    call = flows.stub.WatchWorkflowRun(
        workflows_pb2.WatchWorkflowRunRequest(
            id=events[0].run_id, after_sequence=events[-1].sequence
        ),
        metadata=flows.metadata,
        timeout=10,
    )

    assert await read_rest(call, 10) == []
    # Beyond the end, too.
    assert await flows.watch(events[0].run_id, events[-1].sequence + 5) == []


# name: (b's input_expression, the a → b condition, a fragment of the error)
EXPRESSION_ERRORS = {
    "missing-key": ("{'x': nodes.a.output.missing}", "", "no such key: missing"),
    "double-plus-int": ("{'x': nodes.a.output.n + 1}", "", "float + int"),
    "not-a-map": ("nodes.a.output.n", "", "yielded 1.0, not a map"),
    "condition-not-a-bool": ("", "nodes.a.output.n", "yielded 1.0, not a bool"),
    "division-by-zero": ("{'x': int(nodes.a.output.n) / 0}", "", "division by zero"),
    "not-json": ("{'x': nodes.a.output.n / 0.0}", "", "input holds NaN or Infinity"),
}


async def test_an_expression_error_at_run_time_fails_the_node_and_the_run(user: Client) -> None:
    flows = Flows(user)
    calls = {}
    for name, (expression, condition, _) in EXPRESSION_ERRORS.items():
        workflow = await flows.create(
            name,
            [node("a", input={"n": 1}), node("b", expression=expression), node("c")],
            [edge("a", "b", condition), edge("b", "c")],
        )
        calls[name] = flows.execute_call(workflow.id)

    for name, call in calls.items():
        expression, condition, fragment = EXPRESSION_ERRORS[name]
        events = await read_rest(call)
        assert kinds(events)[-1] == "RUN_FAILED", name
        assert node_kinds(events, "a") == ["NODE_QUEUED", "NODE_STARTED", "NODE_SUCCEEDED"]
        assert node_kinds(events, "b") == ["NODE_FAILED"], name
        assert node_kinds(events, "c") == ["NODE_CANCELLED"], name
        failed = next(e for e in events if e.node_id == "b")
        if name != "not-json":  # that one evaluates; its result is refused
            # The message names the expression that failed (the condition, if it was that).
            assert failed.message.startswith(f"{condition or expression!r}: "), failed.message
        assert fragment in failed.message, (name, failed.message)
        run = await flows.run(events[0].run_id)
        assert run.status == RUN_FAILED
        assert run.error == f"node 'b' failed: {failed.message}"
        assert statuses(run) == {"a": "SUCCEEDED", "b": "FAILED", "c": "CANCELLED"}
        b = nodes_of(run)["b"]
        assert (b.task_id, b.error) == ("", failed.message)
