"""The dashboard's workflow pages over real HTTP: the list, a definition's
page (its graph, nodes, edges, versions, recent runs and the form that starts
a run), and checking a pasted definition by the engine's rules; escaping,
CSRF and ownership.

One server for the module: each test makes its own workflows under a unique
name, and a fresh member sees none of them. No worker is connected: the runs
started here only need to exist."""

from __future__ import annotations

import html
import re
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from markupsafe import escape

from orchestrator.web.pages.workflows import MAX_PASTED
from tests.e2e.conftest import Client, connect
from tests.e2e.workflow_helpers import MEMBER_PASSWORD, Flows, create_member, edge, node
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import Page, WebClient, dashboard_url, flash, region, signed_in

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]

# A static file asked for while the longest paste is checked: checked in the
# event loop, it waits for all of the check (1 to 3 s here); checked in a
# thread, the loop shares the interpreter with it and still answers in a
# fifth of a second here.
STATIC_DEADLINE = 1.0
GRAPH_NODE = re.compile(r'<g class="node [^"]*" data-node-id="([^"]*)" data-state="([A-Z]*)">')


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


@pytest.fixture
def web(orchestrator: ServerProcess) -> WebClient:
    """The admin, signed in to the dashboard."""
    return signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD)


@dataclass
class Member:
    """A new member account, signed in both ways."""

    web: WebClient
    api: Client


@pytest.fixture
async def member(orchestrator: ServerProcess, admin: Client) -> AsyncIterator[Member]:
    username = f"member-{uuid.uuid4().hex[:10]}"
    await create_member(admin, username)
    client = WebClient(dashboard_url(orchestrator))
    client.sign_in(username, MEMBER_PASSWORD)
    async with connect(orchestrator, username, MEMBER_PASSWORD) as api:
        yield Member(client, api)


def unique(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- reading pages (shared with test_web_runs) ------------------------------------


def graph_states(text: str) -> dict[str, str]:
    """The drawn graph's nodes: id -> data-state ("" on a definition)."""
    return {html.unescape(node_id): state for node_id, state in GRAPH_NODE.findall(text)}


async def run_ids(flows: Flows, workflow_id: str) -> set[str]:
    runs, _ = await flows.list_runs(page_size=500, workflow_id=workflow_id)
    return {run.id for run in runs}


# -- the list --------------------------------------------------------------------


async def test_the_list_shows_each_workflow_with_its_latest_version_and_links(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    name = unique()
    workflow = await flows.create(name, [node("a")], description="first <b>draft</b>")
    await flows.update(workflow.id, [node("a"), node("b")], [edge("a", "b")], "second <i>cut</i>")

    page = web.get("/workflows")

    assert page.status == 200
    row = re.search(rf'<tr data-workflow-id="{workflow.id}">(.*?)</tr>', page.text, re.S)
    assert row, page.text[:3000]
    cells = row.group(1)
    assert f'<a href="/workflows/{workflow.id}">{name}</a>' in cells
    assert ">v2<" in cells and ">2<" in cells
    assert "second &lt;i&gt;cut&lt;/i&gt;" in cells and "<i>" not in cells
    assert f'href="/runs?workflow={workflow.id}"' in cells
    assert 'href="/workflows/validate"' in page.text


async def test_a_member_with_no_workflows_is_told_how_to_make_one(member: Member) -> None:
    page = member.web.get("/workflows")

    assert page.status == 200
    assert "No workflows yet" in page.text
    assert "orchestrator workflow create -f greet.yaml" in page.text
    assert "name: greet" in page.text
    assert 'id="workflow-rows"' not in page.text


# -- a workflow's page -----------------------------------------------------------


async def test_the_definition_page_draws_the_graph_and_lists_nodes_edges_and_versions(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    first = await flows.create(unique(), [node("only")])
    condition = "input.note != '<script>alert(1)</script>'"
    await flows.update(
        first.id,
        [
            node("start", input={"html": "<script>alert(2)</script>"}),
            node("wait", "sleep", {"seconds": 1}, max_attempts=5, timeout_seconds=30),
            node(
                "shout",
                expression="{'loud': nodes.start.output.html}",
                concurrency_key_expression="input.team",
                concurrency_limit=2,
            ),
        ],
        [edge("start", "wait"), edge("start", "shout", condition)],
    )

    page = web.get(f"/workflows/{first.id}")

    assert page.status == 200
    assert f'data-live="/live/workflows/{first.id}"' in page.text
    graph = region(page, "workflow-graph")
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="graph"' in graph
    assert graph_states(graph) == {"start": "", "wait": "", "shout": ""}
    assert "<script>" not in page.text
    assert str(escape(condition)) in region(page, "workflow-edges")
    nodes = region(page, "workflow-nodes")
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in nodes
    assert "5 attempts at most" in nodes and "30 s per attempt" in nodes
    assert "2 at once per" in nodes and "input.team" in nodes
    assert "{&#39;loud&#39;: nodes.start.output.html}" in nodes
    versions = region(page, "workflow-versions")
    assert f'href="/workflows/{first.id}?version=2" aria-current="page"' in versions
    assert f'href="/workflows/{first.id}?version=1"' in versions
    assert "No runs yet" in region(page, "workflow-runs")

    older = web.get(f"/workflows/{first.id}?version=1")
    assert graph_states(region(older, "workflow-graph")) == {"only": ""}
    assert "an older version" in older.text
    # The largest version the store can hold, past it (PostgreSQL refuses to
    # be asked), in other digits than ASCII, too long to be a number: the same.
    past = ("2147483647", "2147483648", "99999999999", "²", "9" * 5000)
    for missing in ("99", "0", "-1", "two", *past):
        gone = web.get(f"/workflows/{first.id}?version={quote(missing)}")
        assert gone.status == 404, missing
        assert "<h1>Not found</h1>" in gone.text


async def test_a_member_gets_not_found_for_the_admins_workflow_and_cannot_run_it(
    web: WebClient, admin: Client, member: Member
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique(), [node("a", "held-type")])

    assert workflow.id not in member.web.get("/workflows").text
    for path in (f"/workflows/{workflow.id}", f"/runs?workflow={workflow.id}"):
        page = member.web.get(path)
        assert page.status == 404, path
        assert "<h1>Not found</h1>" in page.text
    # Its live twin sends nothing of it.
    with member.web.live(f"/live/workflows/{workflow.id}") as live:
        assert live.next_event().name == "missing"

    member.web.get("/workflows")  # a page of the member's own, for its CSRF token
    refused = member.web.post(f"/workflows/{workflow.id}/run", {"input": "{}", "version": "1"})
    assert refused.status == 404
    assert await run_ids(flows, workflow.id) == set()
    # The admin sees it.
    assert web.get(f"/workflows/{workflow.id}").status == 200


# -- starting a run --------------------------------------------------------------


async def test_the_run_form_starts_a_run_with_the_input_and_shows_it(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique(), [node("a", "held-type")])
    web.get(f"/workflows/{workflow.id}")

    reply = web.post(f"/workflows/{workflow.id}/run", {"input": '{"who": "<web>"}', "version": "1"})

    assert reply.status == 303
    run_id = reply.location.removeprefix("/runs/")
    assert await run_ids(flows, workflow.id) == {run_id}
    run = await flows.run(run_id)
    assert dict(run.input) == {"who": "<web>"}
    page = web.get(reply.location)
    assert flash(page) == "ok: Run started."
    listed = region(web.get(f"/workflows/{workflow.id}"), "workflow-runs")
    assert f'<li data-run-id="{run_id}" data-status="RUNNING">' in listed


async def test_bad_input_is_shown_at_the_field_and_starts_nothing(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique(), [node("a", "held-type")])
    url = f"/workflows/{workflow.id}/run"

    for text, problem in (
        ('{"name": <b>', "input: is not JSON: Expecting value at line 1, column 10"),
        ("[1, 2]", 'input: must be a JSON object, such as {"n": 1}, not an array'),
        # Past what the decoder can follow: a problem with the field, not a server error.
        ("[" * 3000, "input: nested deeper than 32 levels"),
        # JSON says nothing of NaN; the engine refuses it, by field.
        ('{"n": NaN}', "input: holds NaN or Infinity, which JSON cannot"),
    ):
        web.get(f"/workflows/{workflow.id}")
        page = web.post(url, {"input": text, "version": "1"})
        assert page.status == 422, text
        problems = region(page, "input-problems")
        assert problem in html.unescape(problems), problems
        # What was typed is kept, escaped, for correcting.
        assert f">{escape(text)}</textarea>" in page.text
        assert 'aria-invalid="true"' in page.text

    assert await run_ids(flows, workflow.id) == set()


async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    web: WebClient, admin: Client
) -> None:
    flows = Flows(admin)
    workflow = await flows.create(unique(), [node("a", "held-type")])
    web.get(f"/workflows/{workflow.id}")

    for token in (None, "forged"):
        refused = web.post(
            f"/workflows/{workflow.id}/run", {"input": "{}", "version": "1"}, csrf=token
        )
        assert refused.status == 403
        assert "Form expired" in refused.text
        checked = web.post("/workflows/validate", {"definition": "nodes: []"}, csrf=token)
        assert checked.status == 403

    assert await run_ids(flows, workflow.id) == set()


# -- checking a pasted definition ------------------------------------------------

BROKEN = """\
name: broken
definition:
  nodes:
    - {id: a, type: echo}
    - {id: b, type: echo}
    - {id: "<script>x</script>", type: echo}
    - {id: a, type: "bad type!"}
  edges:
    - {source: a, target: nowhere}
    - {source: a, target: b, condition: "input.n >"}
"""


def problems(page: Page) -> dict[str, str]:
    """The problems listed: field -> description."""
    found = re.findall(
        r'<li data-field="([^"]*)"><code>[^<]*</code>: (.*?)</li>',
        region(page, "validate-problems"),
    )
    return {html.unescape(field): html.unescape(text) for field, text in found}


async def test_validation_shows_every_problem_by_field_and_the_graph_so_far(
    web: WebClient,
) -> None:
    form = web.get("/workflows/validate")
    assert form.status == 200
    assert 'name="definition"' in form.text

    page = web.post("/workflows/validate", {"definition": BROKEN})

    assert page.status == 200
    found = problems(page)
    assert set(found) == {
        "definition.nodes[2].id",
        "definition.nodes[3].id",
        "definition.nodes[3].type",
        "definition.edges[0].target",
        "definition.edges[1].condition",
    }
    assert found["definition.nodes[3].id"] == "duplicate node id 'a' (also nodes[0])"
    assert found["definition.edges[0].target"] == "unknown node 'nowhere'"
    assert "5 problems" in page.text
    # The pasted text, the problems and the graph all show the id as text.
    assert "<script>x</script>" not in page.text
    assert set(graph_states(region(page, "validate-graph"))) == {"a", "b", "<script>x</script>"}
    assert "&lt;script&gt;x&lt;/script&gt;" in region(page, "definition-text")
    assert 'id="validate-valid"' not in page.text


async def test_a_valid_definition_is_said_valid_with_its_order_and_graph(web: WebClient) -> None:
    web.get("/workflows/validate")
    whole = web.post(
        "/workflows/validate",
        {
            "definition": "name: greet\ndefinition:\n  nodes:\n"
            "    - {id: hello, type: echo}\n    - {id: again, type: echo}\n"
            "  edges: [{source: hello, target: again, condition: \"input.name != ''\"}]\n"
        },
    )
    assert whole.status == 200
    valid = region(whole, "validate-valid")
    assert "<code>hello</code> → <code>again</code>" in valid
    assert graph_states(region(whole, "validate-graph")) == {"hello": "", "again": ""}

    # A bare definition, in JSON, is checked the same way.
    web.get("/workflows/validate")
    bare = web.post(
        "/workflows/validate", {"definition": '{"nodes": [{"id": "solo", "type": "echo"}]}'}
    )
    assert "<code>solo</code>" in region(bare, "validate-valid")


async def test_text_that_is_not_a_definition_is_explained(web: WebClient) -> None:
    cases = {
        "nodes: [1,, 2]": "text: not valid YAML or JSON (line 1, column 11)",
        "": "text: is empty: paste a workflow in YAML or JSON",
        # An alias could stand for a value too large to walk.
        "a: &x [1]\nnodes: [*x]": "text: not valid YAML or JSON (line 2, column 9): aliases",
        "nodes: [{id: a, type: echo, colour: red}]": "definition.nodes[0].colour: unknown field",
        "name: n\ndefinition: {nodes: [{id: a, type: echo, input: {at: 2024-01-02}}]}": "text: ",
        # Deeper than libyaml follows, then deeper than Python's recursion limit.
        "[" * 3000: "text: not valid YAML or JSON (line 1, column 1001): exceeded maximum nesting",
        "[" * 999 + "]" * 999: "text: nested too deeply to read",
    }
    for text, expected in cases.items():
        web.get("/workflows/validate")
        page = web.post("/workflows/validate", {"definition": text})
        assert page.status == 200, text
        shown = [f"{field}: {description}" for field, description in problems(page).items()]
        assert any(line.startswith(expected) for line in shown), (text, shown)


# -- long pastes -----------------------------------------------------------------


def flow_definition(nodes: int, edges: int) -> str:
    """A bare definition, written compactly: nodes n0, n1, ... and edges from
    each node to the next few (so no cycle)."""
    pairs = [(i, i + step) for i in range(nodes) for step in range(1, 7) if i + step < nodes]
    assert len(pairs) >= edges
    return "\n".join(
        [
            "nodes:",
            *(f"- {{id: n{i}, type: echo}}" for i in range(nodes)),
            "edges:",
            *(f"- {{source: n{a}, target: n{b}}}" for a, b in pairs[:edges]),
        ]
    )


async def test_a_paste_longer_than_the_limit_is_refused_unread(web: WebClient) -> None:
    form = web.get("/workflows/validate")
    limit = f"At most {MAX_PASTED // 1024} KiB: room for the server's limits of 1000 nodes"
    assert limit in form.text

    page = web.post("/workflows/validate", {"definition": "nodes: []\n" + "#" * MAX_PASTED})

    assert page.status == 200
    assert problems(page) == {
        "text": f"longer than {MAX_PASTED // 1024} KiB ({MAX_PASTED // 1024 + 1} KiB given)"
    }
    assert 'id="validate-graph"' not in page.text


async def test_a_definition_past_the_engines_size_limits_is_refused_without_drawing(
    web: WebClient,
) -> None:
    text = flow_definition(1001, 5001)
    assert len(text) <= MAX_PASTED
    web.get("/workflows/validate")

    page = web.post("/workflows/validate", {"definition": text})

    assert page.status == 200
    assert problems(page) == {
        "definition.nodes": "at most 1000 nodes, not 1001",
        "definition.edges": "at most 5000 edges, not 5001",
    }
    assert 'id="validate-graph"' not in page.text


async def test_the_server_answers_while_a_long_paste_is_checked(
    web: WebClient, orchestrator: ServerProcess
) -> None:
    """The largest definition the engine takes, pasted: a second or more of
    parsing, validating and drawing, none of it on the event loop, so static
    files asked for meanwhile come back, and soon. (Checked in the loop, none
    comes back before the check is done.)"""
    text = flow_definition(1000, 5000)
    assert MAX_PASTED * 0.8 < len(text) <= MAX_PASTED
    other = WebClient(dashboard_url(orchestrator))
    web.get("/workflows/validate")

    slowest = 0.0
    answered_meanwhile = 0
    with ThreadPoolExecutor(1) as pool:
        checking = pool.submit(web.post, "/workflows/validate", {"definition": text})
        deadline = time.monotonic() + 60
        while not checking.done():
            assert time.monotonic() < deadline, "the paste was not checked in a minute"
            asked = time.monotonic()
            assert other.get("/static/app.css").status == 200
            slowest = max(slowest, time.monotonic() - asked)
            answered_meanwhile += not checking.done()
        page = checking.result()

    assert "Its nodes run in the order: <code>n0</code> → " in region(page, "validate-valid")
    assert len(graph_states(region(page, "validate-graph"))) == 1000
    assert answered_meanwhile >= 3, answered_meanwhile
    assert slowest < STATIC_DEADLINE, slowest
