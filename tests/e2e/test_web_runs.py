"""The dashboard's run pages over real HTTP: the list (per workflow, by
state, paged, live), a run's page (its graph coloured by node state and
followed live to the end, the timeline, a node's task), cancelling and
running again; escaping, CSRF and ownership.

One server for the module. Runs of nodes whose type no worker serves stay
RUNNING for as long as a test needs; the one test with a worker starts it
only once the run's page is being followed."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from orchestrator.proto import workers_pb2
from tests.e2e import test_web_workflows as workflow_pages
from tests.e2e.conftest import Client, WorkerFactory
from tests.e2e.stream_helpers import hand_worker
from tests.e2e.test_web_workflows import Member, graph_states, run_ids, unique
from tests.e2e.workflow_helpers import RUN_CANCELLED, RUN_RUNNING, Flows, edge, node
from tests.support.server import ServerProcess
from tests.support.web import LiveStream, WebClient, flash, followed, region

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]

# pytest finds fixtures by name in this module: the signed-in admin and member
# of the workflow pages' tests.
web = workflow_pages.web
member = workflow_pages.member

RUN_ROW = re.compile(r'<tr data-run-id="([^"]+)" data-status="([A-Z]+)">')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
HELD = "held-by-nobody"
NODE_ENDED = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELLED"}


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


def rows(text: str) -> dict[str, str]:
    """The runs listed: run id -> status, in page order."""
    return dict(RUN_ROW.findall(text))


async def held_run(flows: Flows, name: str = "", run_input: dict[str, Any] | None = None) -> str:
    """A RUNNING run of a new workflow whose one node no worker serves; its id."""
    workflow = await flows.create(name or unique("held"), [node("wait", HELD)])
    call, started = await flows.start(workflow.id, run_input)
    call.cancel()  # only the stream: the run goes on
    return started.run_id


# -- the list --------------------------------------------------------------------


async def test_the_list_shows_runs_by_workflow_and_state_with_their_workflow(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    name = unique("listed")
    workflow = await flows.create(name, [node("wait", HELD)])
    runs = []
    for _ in range(2):
        call, started = await flows.start(workflow.id)
        call.cancel()
        runs.append(started.run_id)
    await flows.cancel(runs[0])

    page = web.get(f"/runs?workflow={workflow.id}")

    assert page.status == 200
    assert rows(page.text) == {runs[1]: "RUNNING", runs[0]: "CANCELLED"}
    assert f'Runs of <a href="/workflows/{workflow.id}">{name}</a>' in page.text
    row = re.search(rf'<tr data-run-id="{runs[0]}".*?</tr>', page.text, re.S)
    assert row and f'href="/workflows/{workflow.id}?version=1">{name}</a>' in row.group(0)
    assert f'href="/runs/{runs[0]}"' in row.group(0)
    assert 'data-live="/live/runs?workflow=' in page.text

    cancelled = web.get(f"/runs?workflow={workflow.id}&status=cancelled")
    assert rows(cancelled.text) == {runs[0]: "CANCELLED"}
    # A state the list does not know means any state.
    assert rows(web.get(f"/runs?workflow={workflow.id}&status=NAPPING").text).keys() == set(runs)
    overall = rows(web.get("/runs").text)
    assert overall[runs[1]] == "RUNNING"


async def test_the_list_is_paged_and_keeps_its_filters(member: Member) -> None:
    flows = Flows(member.api)
    workflow = await flows.create(unique("paged"), [node("wait", HELD)])
    started = set()
    for _ in range(51):
        call, event = await flows.start(workflow.id)
        call.cancel()
        started.add(event.run_id)

    first = member.web.get(f"/runs?workflow={workflow.id}&status=RUNNING")
    assert len(rows(first.text)) == 50
    link = NEXT.search(first.text)
    assert link, first.text[-3000:]
    next_url = html.unescape(link.group(1))
    assert f"workflow={workflow.id}" in next_url and "status=RUNNING" in next_url

    second = member.web.get(next_url)
    assert len(rows(second.text)) == 1
    assert not NEXT.search(second.text)
    assert "First page" in second.text
    assert set(rows(first.text)) | set(rows(second.text)) == started
    # A torn page token shows the first page.
    assert len(rows(member.web.get("/runs?page=not-a-token").text)) == 50


async def test_a_new_member_is_told_how_to_start_a_run(member: Member) -> None:
    page = member.web.get("/runs")
    assert rows(page.text) == {}
    assert "No workflow runs yet" in page.text
    assert "orchestrator workflow run greet --input" in page.text


async def test_the_live_list_shows_a_run_started_elsewhere(web: WebClient, admin: Client) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique("live"), [node("wait", HELD)])
    with web.live(f"/live/runs?workflow={workflow.id}") as live:
        assert "No runs match" in live.next_region("run-list")
        call, started = await flows.start(workflow.id)
        call.cancel()
        shown = live.next_region("run-list", contains=started.run_id)
    assert f'<tr data-run-id="{started.run_id}" data-status="RUNNING">' in shown


# -- a run's page ----------------------------------------------------------------


def greet(name: str, flows: Flows) -> Any:
    """The README's greet, with a longer pause (so that it is seen running)
    and markup in what its nodes say."""
    return flows.create(
        name,
        [
            node("hello", input={"greeting": "<b>hello</b>"}),
            node("pause", "sleep", {"seconds": 2}),
            node(
                "again",
                expression="{'greeting': nodes.hello.output.greeting + ', ' + input.name + '!'}",
            ),
            node("apologise", input={"sorry": True}),
        ],
        [
            edge("hello", "pause"),
            edge("pause", "again"),
            edge("hello", "apologise", "input.name == '<script>'"),
        ],
    )


def follow_to_the_end(live: LiveStream) -> tuple[list[dict[str, str]], str]:
    """Every state of the graph the stream shows until the run and all its
    nodes have ended, and the run's status as last sent."""
    drawn: list[dict[str, str]] = []
    status = ""
    while not (
        re.search(r">(SUCCEEDED|FAILED|CANCELLED)<", status)
        and drawn
        and all(state in NODE_ENDED for state in drawn[-1].values())
    ):
        event = live.next_event()
        assert event.name == "region", event
        region_id, shown = event.region()
        if region_id == "run-graph":
            drawn.append(graph_states(shown))
        elif region_id == "run-status":
            status = shown
    return drawn, status


def states_of(drawn: list[dict[str, str]], node_id: str) -> list[str]:
    """The states one node was drawn in, in order, each once."""
    seen: list[str] = []
    for states in drawn:
        if not seen or seen[-1] != states[node_id]:
            seen.append(states[node_id])
    return seen


def first_drawn(drawn: list[dict[str, str]], node_id: str, state: str) -> int:
    return next(index for index, states in enumerate(drawn) if states[node_id] == state)


async def test_a_greet_run_turns_green_live_with_apologise_skipped(
    web: WebClient, admin: Client, start_worker: WorkerFactory
) -> None:
    flows = Flows(admin)
    workflow = await greet(unique("greet"), flows)
    web.get(f"/workflows/{workflow.id}")
    started = web.post(
        f"/workflows/{workflow.id}/run", {"input": '{"name": "<web>"}', "version": "1"}
    )
    assert started.status == 303
    run_path = started.location

    page = web.get(run_path)
    assert f'data-live="/live{run_path}"' in page.text
    assert re.search(r">RUNNING<", region(page, "run-status"))
    assert graph_states(region(page, "run-graph"))["hello"] == "QUEUED"
    with web.live(f"/live{run_path}") as live:
        first = graph_states(live.next_region("run-graph"))
        assert first == {
            "hello": "QUEUED",
            "pause": "PENDING",
            "again": "PENDING",
            "apologise": "PENDING",
        }
        await start_worker("--demo")
        drawn, status = follow_to_the_end(live)
    drawn.insert(0, first)

    assert ">SUCCEEDED<" in status
    assert states_of(drawn, "hello")[0] == "QUEUED"
    assert states_of(drawn, "hello")[-1] == "SUCCEEDED"
    assert "RUNNING" in states_of(drawn, "pause")
    assert states_of(drawn, "pause")[-1] == "SUCCEEDED"
    assert states_of(drawn, "again")[0] == "PENDING"
    assert states_of(drawn, "again")[-1] == "SUCCEEDED"
    assert states_of(drawn, "apologise") == ["PENDING", "SKIPPED"]
    # In the graph's order: each node turned green after the one before it.
    assert (
        first_drawn(drawn, "hello", "SUCCEEDED")
        <= first_drawn(drawn, "pause", "RUNNING")
        < first_drawn(drawn, "pause", "SUCCEEDED")
        <= first_drawn(drawn, "again", "SUCCEEDED")
    )
    # Clicking a node: the graph links to the page with its task.
    done = web.get(run_path)
    timeline = region(done, "run-gantt")
    assert timeline.count('<g class="gantt-row') == 4
    assert 'data-label="apologise"' in timeline
    assert f'href="{run_path}?node=hello"' in region(done, "run-graph")
    assert "<script>" not in done.text
    detail = region(web.get(f"{run_path}?node=again"), "node-detail")
    run = await flows.run(run_path.removeprefix("/runs/"))
    task_id = next(n.task_id for n in run.nodes if n.node_id == "again")
    assert f'href="/tasks/{task_id}"' in detail
    assert "&lt;b&gt;hello&lt;/b&gt;, &lt;web&gt;!" in region(detail, "node-output")
    assert "&lt;b&gt;hello&lt;/b&gt;, &lt;web&gt;!" in region(detail, "node-input")
    assert "<b>" not in detail
    skipped = region(web.get(f"{run_path}?node=apologise"), "node-detail")
    assert "SKIPPED" in skipped and "left it out" in skipped


async def test_the_run_page_shows_its_input_graph_timeline_and_waiting_nodes(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(
        unique("shown"), [node("first", HELD), node("then", HELD)], [edge("first", "then")]
    )
    call, started = await flows.start(workflow.id, {"note": "<script>alert(1)</script>"})
    call.cancel()
    run_path = f"/runs/{started.run_id}"

    page = web.get(run_path)

    assert page.status == 200
    assert graph_states(region(page, "run-graph")) == {"first": "QUEUED", "then": "PENDING"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in region(page, "run-input")
    assert "<script>alert" not in page.text
    assert "not started" in region(page, "run-gantt")
    assert re.search(r">RUNNING<", region(page, "run-status"))
    nodes = region(page, "run-nodes")
    assert '<tr data-node-id="first" data-state="QUEUED">' in nodes
    assert nodes.index('data-node-id="first"') < nodes.index('data-node-id="then"')
    assert "Select a node" in region(page, "node-detail")

    waiting = region(web.get(f"{run_path}?node=then"), "node-detail")
    assert "none yet: it waits for the nodes before it" in waiting
    unknown = region(web.get(f"{run_path}?node=%3Cnope%3E"), "node-detail")
    assert "This run has no node <code>&lt;nope&gt;</code>" in unknown
    await flows.cancel(started.run_id)


async def test_cancel_is_confirmed_checked_and_refused_once_the_run_ended(
    web: WebClient, admin: Client, member: Member
) -> None:
    flows = Flows(admin)
    run_id = await held_run(flows)
    run_path = f"/runs/{run_id}"
    page = web.get(run_path)
    form = re.search(
        r'<form class="action" data-confirm="([^"]+)" method="post" action="([^"]+)"',
        region(page, "run-actions"),
    )
    assert form and form.group(2) == f"{run_path}/cancel"

    assert web.post(f"{run_path}/cancel", {}, csrf=None).status == 403
    member.web.get("/runs")
    assert member.web.post(f"{run_path}/cancel", {}).status == 404
    assert (await flows.run(run_id)).status == RUN_RUNNING

    web.get(run_path)
    cancelled = followed(web, web.post(f"{run_path}/cancel", {}))
    assert flash(cancelled) == "ok: Run cancelled."
    assert re.search(r">CANCELLED<", region(cancelled, "run-status"))
    assert f'action="{run_path}/cancel"' not in cancelled.text
    assert (await flows.run(run_id)).status == RUN_CANCELLED

    again = followed(web, web.post(f"{run_path}/cancel", {}))
    assert flash(again) == f"error: workflow run {run_id} is already CANCELLED"


async def test_run_again_starts_a_new_run_with_the_same_input(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    run_input = {"city": "<Paris>", "n": 3}
    run_id = await held_run(flows, run_input=run_input)
    page = web.get(f"/runs/{run_id}")
    actions = region(page, "run-actions")
    form = re.search(r'action="(/workflows/[^"]+/run)"', actions)
    fields = dict(
        re.findall(r'<input type="hidden" name="(input|version)" value="([^"]*)">', actions)
    )
    assert form and set(fields) == {"input", "version"}

    reply = web.post(form.group(1), {k: html.unescape(v) for k, v in fields.items()})

    assert reply.status == 303
    new_id = reply.location.removeprefix("/runs/")
    assert new_id != run_id
    workflow_id = (await flows.run(run_id)).workflow_id
    assert await run_ids(flows, workflow_id) == {run_id, new_id}
    assert dict((await flows.run(new_id)).input) == run_input


async def test_a_member_gets_not_found_for_the_admins_run(
    web: WebClient, admin: Client, member: Member
) -> None:
    run_id = await held_run(Flows(admin))

    assert run_id not in member.web.get("/runs").text
    for path in (f"/runs/{run_id}", f"/runs/{run_id}?node=wait"):
        page = member.web.get(path)
        assert page.status == 404, path
        assert "<h1>Not found</h1>" in page.text
    with member.web.live(f"/live/runs/{run_id}") as live:
        assert live.next_event().name == "missing"
    assert web.get(f"/runs/{run_id}").status == 200


async def test_the_selected_nodes_log_lines_arrive_live(web: WebClient, admin: Client) -> None:
    """A task's log line makes no run event: the page follows the selected
    node's task too."""
    flows = Flows(admin)
    task_type = unique("logs")
    workflow = await flows.create(unique("logged"), [node("step", task_type)])
    call, started = await flows.start(workflow.id)
    call.cancel()
    async with hand_worker(admin, task_type) as worker:
        given = await worker.assignment()
        with web.live(f"/live/runs/{started.run_id}?node=step") as live:
            first = live.next_region("node-detail")
            assert "one &lt;line&gt;" not in first
            await worker.send(
                workers_pb2.WorkerMessage(
                    log=workers_pb2.TaskLog(
                        task_id=given.task_id, fencing_token=given.fencing_token, line="one <line>"
                    )
                )
            )
            assert "one &lt;line&gt;" in live.next_region("node-detail", contains="line")
        page = web.get(f"/runs/{started.run_id}?node=step")
        assert 'class="node state-running selected" data-node-id="step"' in page.text
        assert 'aria-current="true"' in region(page, "run-graph")
