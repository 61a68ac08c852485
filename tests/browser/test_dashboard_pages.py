"""The dashboard's pages in Chromium, against the real server and demo
worker. Tasks: rows and progress arrive live (the document is never
reloaded), a task is cancelled from its page, other people's tasks stay out
of sight, a form without its CSRF token changes nothing, user text stays
text, signing out ends the session's cookie. Runs: the README's `greet`
workflow, its nodes changing colour live and in order. Looks: no page wider
than a phone's screen, and the screenshots the README shows (written to
docs/screenshots/latest; docs/screenshots holds the copies committed).

One module, so one server, worker and browser start for all of them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest_asyncio
import yaml
from playwright.async_api import Dialog, Page, StorageState, expect

from orchestrator.client import Client, TaskSpec, TaskStatus, Workflow, WorkflowRun
from tests.browser.conftest import (
    ADMIN,
    PHONE,
    Account,
    Cli,
    OpenPage,
    mark_document,
    same_document,
    screenshot,
    sign_in,
)
from tests.e2e.conftest import REPO, connect
from tests.support.server import ServerProcess

# Functions, not expressions: Playwright evals an expression, which the CSP forbids.
PROGRESS = "() => +(document.querySelector('#task-progress')?.getAttribute('value') ?? -1)"
PROGRESS_AT_LEAST = f"least => ({PROGRESS})() >= least"
# The walkthrough's workflow, as the README has it: what a reader would create.
GREET_YAML = re.compile(r"Save this as `greet.yaml`:\s*```yaml\n(.*?)```", re.S)
# Long enough for the run page to be open before the first node starts.
GREET_DELAY_SECONDS = 2
# A README image is fetched by every reader of the page.
SCREENSHOT_BYTES = 200_000
# Keeps every state of the run's graph the document shows, from its first
# paint on: each node's data-state and the colour its box is painted. Run by
# Playwright before the page's own script (the CSP does not apply to it).
RECORD_GRAPH = """
(() => {
  const seen = [];
  window.__graphStates = seen;
  const snapshot = () => {
    const nodes = document.querySelectorAll("#run-graph g.node");
    if (!nodes.length) return;
    const states = {};
    for (const node of nodes) {
      const box = node.querySelector(".node-box");
      states[node.dataset.nodeId] = [node.dataset.state, box ? getComputedStyle(box).fill : ""];
    }
    if (JSON.stringify(seen[seen.length - 1]) !== JSON.stringify(states)) seen.push(states);
  };
  document.addEventListener("DOMContentLoaded", () => {
    snapshot();
    new MutationObserver(snapshot).observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"],
    });
  });
})();
"""
# How far along a node is: states only move right.
RANK = {"PENDING": 0, "QUEUED": 1, "RUNNING": 2, "SUCCEEDED": 3, "SKIPPED": 3}
WIDER_THAN_THE_SCREEN = (
    "() => document.scrollingElement.scrollWidth > window.innerWidth + 1"
    " ? `${document.scrollingElement.scrollWidth} > ${window.innerWidth}` : ''"
)


def path_of(page: Page) -> str:
    return urlsplit(page.url).path


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


# -- tasks ----------------------------------------------------------------------


async def test_a_task_created_from_the_cli_appears_on_the_open_tasks_page(
    member_page: Page, member_cli: Cli
) -> None:
    await member_page.goto("/tasks")
    await mark_document(member_page)
    title = f"from the CLI {uuid.uuid4().hex[:8]}"

    created = await member_cli("task", "create", "echo", "--title", title, "--start", "-o", "json")

    assert created.code == 0, created.stderr
    row = member_page.locator(f'#task-rows tr[data-task-id="{created.json()["id"]}"]')
    await expect(row.locator("td.title")).to_have_text(title)
    # The row follows the task too: the demo worker echoes it at once.
    await expect(row).to_have_attribute("data-status", "SUCCEEDED")
    assert await same_document(member_page)


async def test_a_sleep_tasks_progress_moves_until_it_succeeds(
    member_page: Page, member_client: Client
) -> None:
    task = await member_client.tasks.create("sleep", {"seconds": 4}, start=True)
    await member_page.goto(f"/tasks/{task.id}")
    await mark_document(member_page)

    seen = [await member_page.evaluate(PROGRESS)]
    for _ in range(2):
        # Each report of the worker (every 10 %) moves the bar.
        await member_page.wait_for_function(PROGRESS_AT_LEAST, arg=seen[-1] + 1)
        seen.append(await member_page.evaluate(PROGRESS))
    await expect(member_page.locator("#task-progress-message")).to_contain_text("of 4s")
    await expect(member_page.locator("#task-status")).to_have_text("SUCCEEDED")

    assert seen[0] < seen[1] < seen[2] < 100, seen
    await expect(member_page.locator("#task-progress")).to_have_attribute("value", "100")
    await expect(member_page.locator("#task-output")).to_contain_text('"slept": 4')
    assert await same_document(member_page)


async def test_a_running_task_is_cancelled_from_its_page(
    member_page: Page, member_client: Client
) -> None:
    task = await member_client.tasks.create("sleep", {"seconds": 60}, start=True)
    await member_page.goto(f"/tasks/{task.id}")
    await expect(member_page.locator("#task-status")).to_have_text("RUNNING")
    questions: list[str] = []

    async def answer(dialog: Dialog) -> None:
        questions.append(dialog.message)
        await dialog.accept()

    member_page.once("dialog", answer)
    await member_page.locator(f'form[action="/tasks/{task.id}/cancel"] button').click()

    await expect(member_page.locator("#task-status")).to_have_text("CANCELLED")
    await expect(member_page.locator("#flash .flash.ok")).to_have_text("Task cancelled.")
    assert questions == ["Cancel this task?"]
    assert (await member_client.tasks.get(task.id)).status is TaskStatus.CANCELLED


async def test_a_member_sees_neither_the_admins_tasks_nor_their_pages(
    member_page: Page,
    open_page: OpenPage,
    member_client: Client,
    shared_orchestrator: ServerProcess,
) -> None:
    title = f"the admin's own {uuid.uuid4().hex[:8]}"
    async with connect(shared_orchestrator) as admin_grpc:
        admins = (await admin_grpc.create("echo", title=title, start=True)).id
    await member_page.goto("/tasks")

    # A task of the member's own, after the admin's, shows the list is live and complete.
    own = await member_client.tasks.create("echo", {}, title="the member's own", start=True)
    await expect(member_page.locator(f'#task-rows tr[data-task-id="{own.id}"]')).to_be_visible()
    await expect(member_page.locator(f'tr[data-task-id="{admins}"]')).to_have_count(0)
    await expect(member_page.locator("#task-list")).not_to_contain_text(title)

    response = await member_page.goto(f"/tasks/{admins}")
    assert response is not None and response.status == 404
    await expect(member_page.locator("h1")).to_have_text("Not found")
    await expect(member_page.locator("main")).not_to_contain_text(title)

    # The same address is the admin's task page: the member was refused, not misdirected.
    admin = await open_page()
    await sign_in(admin, ADMIN.username, ADMIN.password)
    shown = await admin.goto(f"/tasks/{admins}")
    assert shown is not None and shown.status == 200
    await expect(admin.locator("h1")).to_have_text(title)


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(
    member_page: Page, member_client: Client
) -> None:
    task = await member_client.tasks.create("sleep", {"seconds": 1}, title="left alone")
    await member_page.goto(f"/tasks/{task.id}")
    # Once the live stream has brought the page up to date, nothing redraws the form.
    await expect(member_page.locator("body.synced")).to_have_count(1)
    form = member_page.locator(f'form[action="/tasks/{task.id}/cancel"]')
    await form.locator('input[name="csrf_token"]').evaluate("input => input.remove()")
    await expect(form.locator("input")).to_have_count(0)

    member_page.once("dialog", accept)
    async with member_page.expect_navigation() as posted:
        await form.locator("button").click()

    response = await posted.value
    assert response is not None and response.status == 403
    await expect(member_page.locator("h1")).to_have_text("Form expired")
    assert (await member_client.tasks.get(task.id)).status is TaskStatus.PENDING


async def test_a_title_with_a_script_tag_is_shown_as_text(
    member_page: Page, member_client: Client
) -> None:
    title = "<script>alert(1)</script>"
    dialogs: list[str] = []

    async def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    member_page.on("dialog", record)
    await member_page.goto("/tasks")
    # Created while the list is open, so its row arrives through the live region.
    task = await member_client.tasks.create("echo", {"note": title}, title=title, start=True)

    cell = member_page.locator(f'#task-rows tr[data-task-id="{task.id}"] td.title')
    await expect(cell).to_have_text(title)
    await expect(cell.locator("script")).to_have_count(0)
    await member_page.goto(f"/tasks/{task.id}")
    await expect(member_page.locator("h1")).to_have_text(title)
    await expect(member_page.locator("#task-input")).to_contain_text(title)
    await expect(member_page.locator("main script")).to_have_count(0)
    assert await member_page.title() == f"{title} · Orchestrator"
    assert dialogs == []


async def test_signing_out_ends_the_session_its_cookie_named(
    page: Page, open_page: OpenPage, member: Account
) -> None:
    await sign_in(page, member.username, member.password)
    cookies = await page.context.cookies()
    assert any(cookie["name"] == "orchestrator_session" for cookie in cookies), cookies
    # The copied cookie is a session of its own while the session lasts...
    before = await open_page()
    await before.context.add_cookies(cookies)
    await before.goto("/tasks")
    assert path_of(before) == "/tasks"

    async with page.expect_navigation():
        await page.locator("header form.sign-out button").click()
    assert path_of(page) == "/login"

    # ...and nothing once signed out, in whichever browser it turns up.
    after = await open_page()
    await after.context.add_cookies(cookies)
    await after.goto("/tasks")
    assert path_of(after) == "/login"
    await page.goto("/tasks")
    assert path_of(page) == "/login"


# -- runs -----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def greet(member_client: Client) -> Workflow:
    found = GREET_YAML.search((REPO / "README.md").read_text())
    assert found, "README.md no longer has the walkthrough's greet.yaml"
    spec = yaml.safe_load(found.group(1))
    return await member_client.workflows.create(
        spec["name"], spec["definition"], spec.get("description", "")
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def greeted(member_client: Client, greet: Workflow) -> WorkflowRun:
    """A finished run of greet."""
    return await member_client.workflows.run(greet.id, {"name": "world"})


def progression(states: list[Mapping[str, list[str]]], node: str) -> list[str]:
    """The states a node went through, each once."""
    seen: list[str] = []
    for snapshot in states:
        if not seen or seen[-1] != snapshot[node][0]:
            seen.append(snapshot[node][0])
    return seen


async def test_the_greet_runs_nodes_change_colour_in_order(
    member_page: Page, member_client: Client, greet: Workflow
) -> None:
    await member_page.add_init_script(RECORD_GRAPH)
    async with member_client.workflows.execute(
        greet.id, {"name": "world"}, delay=GREET_DELAY_SECONDS
    ) as stream:
        run_id = (await anext(stream)).run_id
    await member_page.goto(f"/runs/{run_id}")
    document = await member_page.evaluate("() => performance.timeOrigin")

    await expect(member_page.locator("#run-status")).to_have_text("SUCCEEDED")
    states: list[dict[str, list[str]]] = await member_page.evaluate("() => window.__graphStates")

    assert await member_page.evaluate("() => performance.timeOrigin") == document, "reloaded"
    assert states, "the run page drew no graph"
    # Seen from before the first node started, each node only moves on...
    assert all(RANK[state] < 3 for state, _ in states[0].values()), states[0]
    for node in states[0]:
        ranks = [RANK[state] for state in progression(states, node)]
        assert ranks == sorted(ranks), (node, states)
    assert progression(states, "hello")[-1] == "SUCCEEDED", states
    assert progression(states, "pause")[-2:] == ["RUNNING", "SUCCEEDED"], states
    assert progression(states, "again")[-1] == "SUCCEEDED", states
    assert progression(states, "apologise")[-1] == "SKIPPED", states
    # ...and only after the nodes before it have finished.
    for snapshot in states:
        rank = {node: RANK[state] for node, (state, _) in snapshot.items()}
        assert rank["pause"] == 0 or rank["hello"] == 3, snapshot
        assert rank["again"] == 0 or rank["pause"] == 3, snapshot
        assert rank["apologise"] == 0 or rank["hello"] == 3, snapshot
    # Each state has a colour of its own.
    fill = {state: colour for s in states for state, colour in s.values()}
    assert len({fill[s] for s in ("PENDING", "RUNNING", "SUCCEEDED", "SKIPPED")}) == 4, fill
    for node in ("hello", "pause", "again"):
        await expect(
            member_page.locator(f'#run-graph g.node[data-node-id="{node}"]')
        ).to_have_class(re.compile(r"\bstate-succeeded\b"))
    skipped = member_page.locator('#run-graph g.node[data-node-id="apologise"]')
    await expect(skipped).to_have_attribute("data-state", "SKIPPED")
    await expect(member_page.locator('#run-nodes tr[data-node-id="apologise"]')).to_contain_text(
        "SKIPPED"
    )


async def test_no_page_is_wider_than_a_phone(
    open_page: OpenPage, member_state: StorageState, member_client: Client, greeted: WorkflowRun
) -> None:
    task = await member_client.tasks.run(
        "echo",
        {"greeting": "hello", "thumbnails": ["spring/cover.jpg", "spring/page-01.jpg"]},
        title="Resize the thumbnails of the spring catalogue",
    )
    phone = await open_page(viewport=PHONE, storage_state=member_state)

    wide: dict[str, str] = {}
    for name, path, shown in [
        ("overview", "/", "#overview-counts"),
        ("tasks", "/tasks", f'tr[data-task-id="{task.id}"]'),
        ("task", f"/tasks/{task.id}", "#task-output"),
        ("run", f"/runs/{greeted.id}", "#run-graph svg"),
    ]:
        await phone.goto(path)
        await expect(phone.locator(shown)).to_be_visible()
        if overflow := await phone.evaluate(WIDER_THAN_THE_SCREEN):
            wide[name] = overflow
    assert wide == {}, f"wider than the phone's {PHONE['width']} px: {wide}"


async def test_screenshots_of_the_overview_a_task_and_a_run(
    member_page: Page,
    open_page: OpenPage,
    member_state: StorageState,
    member_client: Client,
    greeted: WorkflowRun,
) -> None:
    # Shown mid-way on the task page, after the overview's picture.
    sleeping = await member_client.tasks.create(
        "sleep", {"seconds": 6}, title="Nightly backup", start=True
    )
    finished = await member_client.tasks.create_many(
        [TaskSpec("echo", {"n": n}, title=f"echo {n}", start=True) for n in range(8)]
        + [TaskSpec("fail", {"message": "disk full", "permanent": True}, start=True)]
    )
    for task in finished:
        await member_client.tasks.wait(task.id)
    shots: dict[str, Path] = {}

    await member_page.goto("/")
    await expect(member_page.locator("#overview-chart svg g.bar").first).to_be_visible()
    await expect(member_page.locator("#overview-failures")).to_contain_text("disk full")
    shots["overview"] = await screenshot(member_page, "overview")

    await member_page.goto(f"/tasks/{sleeping.id}")
    await member_page.wait_for_function(PROGRESS_AT_LEAST, arg=40)
    await expect(member_page.locator("#task-status")).to_have_text("RUNNING")
    shots["task"] = await screenshot(member_page, "task")

    # With a node picked: its task's output under the graph.
    await member_page.goto(f"/runs/{greeted.id}?node=again")
    await expect(member_page.locator("#node-output")).to_contain_text("hello, world!")
    shots["run"] = await screenshot(member_page, "run")

    dark = await open_page(color_scheme="dark", storage_state=member_state)
    await dark.goto(f"/runs/{greeted.id}?node=again")
    await expect(dark.locator("#node-output")).to_contain_text("hello, world!")
    shots["run-dark"] = await screenshot(dark, "run-dark")

    sizes = {name: path.stat().st_size for name, path in shots.items()}
    assert all(size < SCREENSHOT_BYTES for size in sizes.values()), sizes
