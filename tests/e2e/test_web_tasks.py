"""The dashboard's task pages over real HTTP: the list (filters, text search,
pages, empty states, live), a task's page (fields, input and output, attempts,
timeline, live progress and log lines), its actions (cancel, run again,
delete) with their refusals, CSRF and ownership.

One server for the module: each test makes its own tasks, told apart by a
label, a title word or a task type of its own; a member account sees only
its own. Workers are driven by hand (RawWorker), so a task is RUNNING,
reports or fails exactly when the test says."""

from __future__ import annotations

import html
import json
import re
import uuid

import pytest

from orchestrator.proto import tasks_pb2, workers_pb2
from tests.e2e.conftest import CALL_TIMEOUT, Client, to_struct, update
from tests.e2e.stream_helpers import hand_worker
from tests.e2e.workflow_helpers import MEMBER_PASSWORD, create_member
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess
from tests.support.web import (
    Event,
    Page,
    WebClient,
    dashboard_url,
    flash,
    followed,
    region,
    signed_in,
)

pytestmark = [pytest.mark.any_database, pytest.mark.server_env(ORCHESTRATOR_HTTP_PORT="0")]

ROW = re.compile(r'<tr data-task-id="([^"]+)" data-status="([A-Z]+)">')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
FIRST = re.compile(r'<a href="([^"]+)">« First page</a>')


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


@pytest.fixture
def web(orchestrator: ServerProcess) -> WebClient:
    """The admin, signed in to the dashboard."""
    return signed_in(orchestrator, ADMIN_USERNAME, ADMIN_PASSWORD)


@pytest.fixture
async def member_web(orchestrator: ServerProcess, admin: Client) -> WebClient:
    """A new member, signed in: it sees none of the tasks made so far."""
    username = f"member-{uuid.uuid4().hex[:10]}"
    await create_member(admin, username)
    client = WebClient(dashboard_url(orchestrator))
    client.sign_in(username, MEMBER_PASSWORD)
    return client


def unique() -> str:
    return uuid.uuid4().hex[:12]


def rows(page: Page) -> dict[str, str]:
    """The list's rows: task id -> status, in page order."""
    assert page.status == 200, page.text[:2000]
    return dict(ROW.findall(page.text))


async def task_of(admin: Client, task_id: str) -> tasks_pb2.Task:
    return await admin.get(task_id)


def status_name(task: tasks_pb2.Task) -> str:
    return tasks_pb2.TaskStatus.Name(task.status).removeprefix("TASK_STATUS_")


# -- the list --------------------------------------------------------------------


async def test_the_list_shows_each_task_as_a_row_with_its_title_escaped(
    web: WebClient, admin: Client
) -> None:
    word = unique()
    task = await admin.create(
        "echo", title=f"<script>alert(1)</script> {word}", labels={"team": "<b>ops</b>"}
    )

    page = web.get(f"/tasks?q={word}")

    assert rows(page) == {task.id: "PENDING"}
    assert "<script>alert(1)</script>" not in page.text
    title = re.search(r'<td class="title">(.*?)</td>', page.text, re.S)
    assert title and "&lt;script&gt;alert(1)&lt;/script&gt; " + word in title.group(1)
    assert f'href="/tasks/{task.id}"' in title.group(1)
    assert "team=&lt;b&gt;ops&lt;/b&gt;" in title.group(1)
    assert 'id="task-rows"' in page.text
    assert 'data-live="/live/tasks?q=' in page.text


async def test_filters_by_state_type_label_and_text_in_the_title(
    web: WebClient, admin: Client
) -> None:
    tag = unique()
    label = {"batch": tag}
    pending = await admin.create("echo", title="Alpha report", labels=label)
    queued = await admin.create(f"nobody-{tag}", title="beta REPORT", labels=label, start=True)
    other = await admin.create("echo", title="gamma", labels=label)

    assert rows(web.get(f"/tasks?label=batch={tag}")) == {
        other.id: "PENDING",
        queued.id: "QUEUED",
        pending.id: "PENDING",
    }
    assert rows(web.get(f"/tasks?label=batch={tag}&status=QUEUED")) == {queued.id: "QUEUED"}
    # A state is taken in any case, as a link may carry it.
    assert rows(web.get(f"/tasks?label=batch={tag}&status=pending")).keys() == {
        pending.id,
        other.id,
    }
    assert rows(web.get(f"/tasks?type=nobody-{tag}")) == {queued.id: "QUEUED"}
    # Text in the title, whatever its case; the other filters still apply.
    assert rows(web.get(f"/tasks?label=batch={tag}&q=report")).keys() == {pending.id, queued.id}
    assert rows(web.get(f"/tasks?label=batch={tag}&q=REPORT&type=echo")) == {pending.id: "PENDING"}

    nothing = web.get(f"/tasks?label=batch={tag}&status=FAILED")
    assert rows(nothing) == {}
    assert "No tasks match these filters" in nothing.text
    assert "No tasks yet" not in nothing.text
    assert '<a href="/tasks">clear them</a>' in nothing.text


async def test_filter_values_the_engine_cannot_use_are_explained_not_a_server_error(
    web: WebClient,
) -> None:
    page = web.get("/tasks?status=BOGUS&label=nokey")
    assert page.status == 200
    text = html.unescape(page.text)
    assert "State</strong>: BOGUS is not a task state (PENDING, QUEUED, RUNNING" in text
    assert "Label</strong>: must be key=value" in text
    assert rows(page) == {}

    torn = web.get("/tasks?page=not-a-token")
    assert torn.status == 200
    assert "Page</strong>: is not a token this server issued" in html.unescape(torn.text)


async def test_pages_follow_the_engine_page_tokens_and_keep_the_filters(
    web: WebClient, admin: Client
) -> None:
    tag = unique()
    batch = tasks_pb2.CreateTasksRequest(
        tasks=[
            tasks_pb2.CreateTaskRequest(type="echo", title=f"n{n}", labels={"paged": tag})
            for n in range(60)
        ]
    )
    created = await admin.tasks.CreateTasks(batch, metadata=admin.metadata, timeout=CALL_TIMEOUT)

    first = web.get(f"/tasks?label=paged={tag}")
    assert len(rows(first)) == 50
    assert not FIRST.search(first.text)
    next_link = NEXT.search(first.text)
    assert next_link, first.text[-3000:]
    next_url = html.unescape(next_link.group(1))
    assert f"label=paged%3D{tag}" in next_url and "page=" in next_url

    second = web.get(next_url)
    assert len(rows(second)) == 10
    assert not NEXT.search(second.text)
    back = FIRST.search(second.text)
    assert back and html.unescape(back.group(1)) == f"/tasks?label=paged%3D{tag}"
    assert set(rows(first)) | set(rows(second)) == {task.id for task in created.tasks}


async def test_a_new_member_is_told_how_to_make_a_first_task(member_web: WebClient) -> None:
    page = member_web.get("/tasks")
    assert rows(page) == {}
    assert "No tasks yet" in page.text
    assert """orchestrator task run echo --input '{"hello": "world"}'""" in page.text


async def test_the_live_list_shows_a_task_created_elsewhere(web: WebClient, admin: Client) -> None:
    tag = unique()
    with web.live(f"/live/tasks?label=live={tag}") as live:
        # The first pass sends what the page shows now.
        assert "No tasks match these filters" in live.next_region("task-list")
        task = await admin.create(
            f"nobody-{tag}", title="made <elsewhere>", labels={"live": tag}, start=True
        )
        shown = live.next_region("task-list", contains=task.id)
    assert f'<tr data-task-id="{task.id}" data-status="QUEUED">' in shown
    assert "made &lt;elsewhere&gt;" in shown


async def test_the_live_list_shows_pending_tasks_and_deletions(
    web: WebClient, admin: Client
) -> None:
    """Neither records an event: the change feed is told all the same."""
    tag = unique()
    with web.live(f"/live/tasks?label=live={tag}") as live:
        assert "No tasks match these filters" in live.next_region("task-list")
        task = await admin.create(f"nobody-{tag}", title="not started", labels={"live": tag})
        shown = live.next_region("task-list", contains=task.id)
        assert f'<tr data-task-id="{task.id}" data-status="PENDING">' in shown
        await admin.tasks.DeleteTask(
            tasks_pb2.DeleteTaskRequest(id=task.id), metadata=admin.metadata
        )
        assert "No tasks match these filters" in live.next_region("task-list")


# -- a task's page ---------------------------------------------------------------


async def test_the_task_page_shows_its_fields_input_attempts_errors_and_timeline(
    web: WebClient, admin: Client
) -> None:
    task_type = f"hand-{unique()}"
    task = await admin.create(
        task_type,
        {"city": "<Paris>", "n": 2},
        title="two <tries>",
        labels={"env": "test"},
        priority=7,
        max_attempts=2,
        concurrency_key="k1",
        concurrency_limit=3,
        start=True,
    )
    async with hand_worker(admin, task_type) as worker:
        for attempt in (1, 2):
            given = await worker.assignment()
            assert given.attempt == attempt
            await worker.send(
                workers_pb2.WorkerMessage(
                    fail=workers_pb2.TaskFail(
                        task_id=task.id,
                        fencing_token=given.fencing_token,
                        error=f"broke <{attempt}>",
                    )
                )
            )
        await admin.watch(task.id)

    page = web.get(f"/tasks/{task.id}")

    assert page.status == 200
    assert region(page, "task-status").endswith(">FAILED</span>")
    assert "<title>two &lt;tries&gt; · Orchestrator</title>" in page.text
    shown_input = region(page, "task-input")
    assert "&lt;Paris&gt;" in shown_input
    assert html.unescape(shown_input) == json.dumps(
        {"city": "<Paris>", "n": 2}, indent=2, sort_keys=True
    )
    assert region(page, "task-error") == "broke &lt;2&gt;"
    fields = html.unescape(region(page, "task-fields"))
    assert "2 of 2" in fields and "env=test" in fields and "<dd>7</dd>" in fields
    assert "key <code>k1</code>, at most 3 at once" in fields
    attempts = region(page, "task-attempts")
    assert attempts.count("outcome-failed") == 2
    assert "broke &lt;1&gt;" in attempts and "broke &lt;2&gt;" in attempts
    assert worker.worker_id[:12] in attempts
    events = re.findall(r'data-event="([A-Z]+)"', region(page, "task-events"))
    assert events == ["FAILED", "STARTED", "RETRYING", "STARTED", "QUEUED"]
    # A failed task offers no Cancel.
    assert f'action="/tasks/{task.id}/cancel"' not in page.text
    assert 'data-confirm="Run this task again, as a new task?"' in page.text


async def test_a_queued_task_says_why_it_waits(web: WebClient, admin: Client) -> None:
    task = await admin.create(f"nobody-{unique()}", start=True)
    page = web.get(f"/tasks/{task.id}")
    assert f"no connected worker serves type {task.type}" in region(page, "task-progress-panel")


async def test_the_live_task_page_follows_progress_logs_and_the_end(
    web: WebClient, admin: Client
) -> None:
    task_type = f"hand-{unique()}"
    task = await admin.create(task_type, {"x": 1}, start=True)
    with web.live(f"/live/tasks/{task.id}") as live:
        assert "QUEUED" in live.next_region("task-status")
        async with hand_worker(admin, task_type) as worker:
            given = await worker.assignment()
            fence = given.fencing_token
            assert "RUNNING" in live.next_region("task-status", contains="RUNNING")

            await worker.send(
                workers_pb2.WorkerMessage(
                    progress=workers_pb2.TaskProgress(
                        task_id=task.id, fencing_token=fence, percent=40, message="<i>half</i>"
                    )
                )
            )
            panel = live.next_region("task-progress-panel", contains='value="40"')
            assert "&lt;i&gt;half&lt;/i&gt;" in panel

            for line in ("first <line>", "second line"):
                await worker.send(
                    workers_pb2.WorkerMessage(
                        log=workers_pb2.TaskLog(task_id=task.id, fencing_token=fence, line=line)
                    )
                )
            logs = live.next_region("task-logs", contains="second line")
            assert "first &lt;line&gt;" in logs
            assert logs.index("first &lt;line&gt;") < logs.index("second line")

            await worker.send(
                workers_pb2.WorkerMessage(
                    complete=workers_pb2.TaskComplete(
                        task_id=task.id, fencing_token=fence, output=to_struct({"done": "<yes>"})
                    )
                )
            )
            assert "SUCCEEDED" in live.next_region("task-status", contains="SUCCEEDED")
            panel = live.next_region("task-progress-panel", contains='value="100"')
            # The last report's message is stale once the task has ended.
            assert "half" not in panel
            assert "&lt;yes&gt;" in live.next_region("task-result", contains="done")


async def test_a_task_that_logs_a_lot_keeps_its_attempt_and_timeline(
    web: WebClient, admin: Client
) -> None:
    """700 log lines push neither its start nor its running attempt off the
    page; the log shows its last 200 lines."""
    task_type = f"hand-{unique()}"
    task = await admin.create(task_type, start=True)
    async with hand_worker(admin, task_type) as worker:
        given = await worker.assignment()
        for n in range(700):
            await worker.send(
                workers_pb2.WorkerMessage(
                    log=workers_pb2.TaskLog(
                        task_id=task.id, fencing_token=given.fencing_token, line=f"line {n:03d}"
                    )
                )
            )
        with web.live(f"/live/tasks/{task.id}") as live:
            live.next_region("task-logs", contains="line 699")
        page = web.get(f"/tasks/{task.id}")

    assert region(page, "task-status").endswith(">RUNNING</span>")
    attempts = region(page, "task-attempts")
    assert '<tr data-attempt="1">' in attempts and "outcome-running" in attempts
    assert worker.worker_id[:12] in attempts
    assert "Not started yet." not in attempts
    events = re.findall(r'data-event="([A-Z]+)"', region(page, "task-events"))
    assert events == ["STARTED", "QUEUED"]
    logs = region(page, "task-logs")
    assert re.findall(r"line (\d{3})</li>", logs) == [f"{n:03d}" for n in range(500, 700)]
    assert "Earlier lines are not shown." in logs


async def test_the_timeline_shows_the_newest_200_events(web: WebClient, admin: Client) -> None:
    task = await admin.create(f"nobody-{unique()}", title="t0")
    for n in range(1, 202):
        task.title = f"t{n}"
        await update(admin, task, "title")

    events = region(web.get(f"/tasks/{task.id}"), "task-events")

    assert events.count('data-event="UPDATED"') == 200
    assert events.rstrip().endswith('<li class="muted">Earlier events are not shown.</li>')


# -- actions ---------------------------------------------------------------------


async def test_cancel_then_cancelling_again_is_refused_with_the_server_message(
    web: WebClient, admin: Client
) -> None:
    task = await admin.create(f"nobody-{unique()}", start=True)
    web.get(f"/tasks/{task.id}")

    done = followed(web, web.post(f"/tasks/{task.id}/cancel", {}))
    assert flash(done) == "ok: Task cancelled."
    assert region(done, "task-status").endswith(">CANCELLED</span>")
    assert status_name(await task_of(admin, task.id)) == "CANCELLED"

    again = web.post(f"/tasks/{task.id}/cancel", {})
    assert again.location == f"/tasks/{task.id}"
    assert flash(followed(web, again)) == f"error: task {task.id} is already CANCELLED"


async def test_delete_is_refused_while_running_and_done_once_cancelled(
    web: WebClient, admin: Client
) -> None:
    task_type = f"hand-{unique()}"
    task = await admin.create(task_type, start=True)
    async with hand_worker(admin, task_type) as worker:
        await worker.assignment()
        web.get(f"/tasks/{task.id}")
        refused = followed(web, web.post(f"/tasks/{task.id}/delete", {}))
        assert flash(refused) == f"error: task {task.id} is running: cancel it first"
        assert status_name(await task_of(admin, task.id)) == "RUNNING"

        followed(web, web.post(f"/tasks/{task.id}/cancel", {}))
    listed = followed(web, web.post(f"/tasks/{task.id}/delete", {}))
    assert flash(listed) == f"ok: Task {task.id} deleted."
    gone = web.get(f"/tasks/{task.id}")
    assert gone.status == 404 and "<h1>Not found</h1>" in gone.text


async def test_run_again_starts_a_new_task_asking_the_same(web: WebClient, admin: Client) -> None:
    task_type = f"hand-{unique()}"
    old = await admin.create(
        task_type,
        {"n": [1, 2]},
        title="again <please>",
        labels={"k": "v"},
        priority=5,
        max_attempts=4,
        idempotency_key=unique(),
    )
    web.get(f"/tasks/{old.id}")

    reply = web.post(f"/tasks/{old.id}/rerun", {})

    assert reply.status == 303
    new_id = reply.location.removeprefix("/tasks/")
    assert new_id and new_id != old.id
    assert flash(web.get(reply.location)).startswith("ok: Running again")
    async with hand_worker(admin, task_type) as worker:
        given = await worker.assignment()
    assert given.task_id == new_id
    assert given.title == "again <please>" and dict(given.labels) == {"k": "v"}
    assert given.max_attempts == 4
    new = await task_of(admin, new_id)
    assert new.priority == 5 and new.input == old.input
    # The old one is as it was: never started.
    assert status_name(await task_of(admin, old.id)) == "PENDING"


async def test_forms_without_the_csrf_token_are_refused_and_change_nothing(
    web: WebClient, admin: Client
) -> None:
    tag = unique()
    task = await admin.create(f"nobody-{tag}", labels={"csrf": tag}, start=True)
    web.get(f"/tasks/{task.id}")
    for action in ("cancel", "rerun", "delete"):
        for token in (None, "0" * 64):
            reply = web.post(f"/tasks/{task.id}/{action}", {}, csrf=token)
            assert reply.status == 403, (action, token)
            assert "Form expired" in reply.text
    reply = web.post("/tasks", {"type": "echo", "title": f"csrf-{tag}", "start": "on"}, csrf=None)
    assert reply.status == 403

    assert status_name(await task_of(admin, task.id)) == "QUEUED"
    assert await admin.list_ids(label=f"csrf={tag}") == [task.id]
    assert rows(web.get(f"/tasks?q=csrf-{tag}")) == {}


async def test_a_member_gets_not_found_for_the_admins_task(
    member_web: WebClient, admin: Client
) -> None:
    task = await admin.create(f"nobody-{unique()}", title="the admin's", start=True)

    page = member_web.get(f"/tasks/{task.id}")
    assert page.status == 404 and "<h1>Not found</h1>" in page.text
    assert "the admin" not in page.text
    assert task.id not in rows(member_web.get("/tasks"))
    member_web.get("/tasks")
    for action in ("cancel", "rerun", "delete"):
        reply = member_web.post(f"/tasks/{task.id}/{action}", {})
        assert reply.status == 404, action
        assert "<h1>Not found</h1>" in reply.text
    # Its live twin shows nothing either: it ends as for a task deleted.
    with member_web.live(f"/live/tasks/{task.id}") as live:
        assert live.next_event() == Event("missing", "{}")
    assert status_name(await task_of(admin, task.id)) == "QUEUED"


# -- a new task from the list ----------------------------------------------------


async def test_the_new_task_form_creates_and_starts_a_task(web: WebClient, admin: Client) -> None:
    word = unique()
    web.get("/tasks")
    reply = web.post(
        "/tasks", {"type": "echo", "title": f"form {word}", "input": '{"a": [1]}', "start": "on"}
    )
    page = followed(web, reply)
    assert flash(page) == "ok: Task queued."
    task_id = reply.location.removeprefix("/tasks/")
    task = await task_of(admin, task_id)
    assert task.title == f"form {word}" and task.type == "echo"
    assert status_name(task) == "QUEUED"
    assert dict(task.input) == {"a": [1.0]}

    reply = web.post("/tasks", {"type": "echo", "title": f"kept {word}"})
    assert flash(followed(web, reply)) == "ok: Task created (not started)."


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "echo", "input": '{"a": '}, "input</code>: is not JSON: Expecting value"),
        ({"type": "echo", "input": "[1, 2]"}, "input</code>: must be a JSON object"),
        ({"type": "9 lives", "input": "{}"}, "type</code>: must start with a letter"),
        # Past what the decoder can follow: a problem with the field, not a server error.
        ({"type": "echo", "input": "[" * 3000}, "input</code>: nested deeper than 32 levels"),
    ],
)
async def test_the_new_task_form_shows_each_problem_by_field_and_keeps_the_values(
    web: WebClient, admin: Client, fields: dict[str, str], problem: str
) -> None:
    word = unique()
    web.get("/tasks")
    page = web.post("/tasks", {**fields, "title": f"<kept> {word}"})
    assert page.status == 400
    assert problem in page.text
    assert '<details class="new-task" open>' in page.text
    assert f'value="&lt;kept&gt; {word}"' in page.text
    assert 'aria-invalid="true"' in page.text
    assert rows(web.get(f"/tasks?q={word}")) == {}


async def test_a_refused_new_task_shows_the_same_filtered_list_again(
    web: WebClient, admin: Client
) -> None:
    word = unique()
    task = await admin.create("echo", title=f"listed {word}")
    query = f"status=PENDING&amp;q={word}"
    # The form is sent to the list's address, query and all.
    assert f'action="/tasks?{query}"' in web.get(f"/tasks?status=pending&q={word}").text

    page = web.post(f"/tasks?status=PENDING&q={word}", {"type": "echo", "input": "[1]"})

    assert page.status == 400
    assert dict(ROW.findall(page.text)) == {task.id: "PENDING"}
    assert f'data-live="/live/tasks?{query}"' in page.text
    assert f'action="/tasks?{query}"' in page.text
    assert '<option value="PENDING" selected>' in page.text
