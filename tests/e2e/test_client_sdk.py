"""The client SDK against a real server and demo worker: typed methods that
return plain values, and the server's own exception classes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator import errors
from orchestrator.client import (
    Client,
    NodeStatus,
    RunStatus,
    SyncClient,
    Task,
    TaskEventType,
    TaskStatus,
    WorkflowEventType,
)
from tests.e2e.conftest import CONNECTED, REPO, SERVER_ENV
from tests.support.database import temporary_database
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

# Generous: a loaded CI machine starts a server slowly; a healthy one in about two seconds.
STARTUP_TIMEOUT = 60

DEFINITION = {
    "nodes": [
        {"id": "double", "type": "echo", "input": {"n": 21}},
        {"id": "report", "type": "echo", "input_expression": "{'n': nodes.double.output.n * 2.0}"},
    ],
    "edges": [{"source": "double", "target": "report"}],
}


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server and a demo worker for the module; the server's address."""
    with temporary_database(tmp_path_factory.mktemp("sdk-db")) as url:
        server = ServerProcess(url, env=SERVER_ENV).start(STARTUP_TIMEOUT)
        assert server.address
        worker = None
        try:
            token = asyncio.run(_worker_token(server.address))
            worker = ServerProcess(
                url,
                env={"ORCHESTRATOR_URL": server.address, "ORCHESTRATOR_TOKEN": token},
                args=("worker", "--demo"),
                cwd=REPO,
            ).launch()
            worker.wait_for_log(CONNECTED, timeout=STARTUP_TIMEOUT)
            yield server.address
        finally:
            if worker is not None:
                worker.stop()
            server.stop()
            print("--- server log:", server.log, sep="\n")


async def _worker_token(address: str) -> str:
    async with Client(address) as client:
        await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        return (await client.tokens.create("sdk demo worker", "worker")).token


@pytest.fixture
async def admin(address: str) -> AsyncIterator[Client]:
    async with Client(address) as client:
        await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        yield client


async def test_tasks_round_trip_as_plain_values(admin: Client) -> None:
    created = await admin.tasks.create(
        "echo", {"n": 3, "items": [1, 2.5, "x"]}, title="first", labels={"suite": "sdk"}
    )
    assert isinstance(created, Task) and dataclasses.is_dataclass(created)
    assert created.status is TaskStatus.PENDING
    assert created.input == {"n": 3, "items": [1, 2.5, "x"]}
    assert isinstance(created.input["n"], int)  # not 3.0
    assert created.idempotency_key  # made up, so that a retried create is one task

    updated = await admin.tasks.update(created.id, title="renamed", input={"n": 4})
    assert (updated.title, updated.input) == ("renamed", {"n": 4})
    page = await admin.tasks.list(label="suite=sdk")
    assert [t.id for t in page.items] == [created.id]
    async with admin.tasks.execute(created.id) as stream:
        events = [event async for event in stream]
    assert [e.type for e in events] == [
        TaskEventType.QUEUED,
        TaskEventType.STARTED,
        TaskEventType.SUCCEEDED,
    ]
    assert [e.sequence for e in events] == [2, 3, 4]  # 1 was the update
    assert events[-1].output == {"n": 4}
    finished = await admin.tasks.get(created.id)
    assert finished.status is TaskStatus.SUCCEEDED and finished.output == {"n": 4}

    replayed = [e async for e in admin.tasks.watch(created.id)]
    assert [e.sequence for e in replayed] == [1, 2, 3, 4]
    tail = [e async for e in admin.tasks.watch(created.id, after_sequence=4)]
    assert tail == []  # past the end of a finished task: nothing, and no hang

    ran = await admin.tasks.run("echo", {"ok": True})
    assert ran.status is TaskStatus.SUCCEEDED and ran.output == {"ok": True}
    pending = await admin.tasks.create("sleep")
    assert (await admin.tasks.cancel(pending.id, "changed my mind")).status is TaskStatus.CANCELLED
    await admin.tasks.delete(pending.id)
    with pytest.raises(errors.NotFound, match=f"task {pending.id} not found"):
        await admin.tasks.get(pending.id)


async def test_failures_raise_the_servers_exception_classes(admin: Client, address: str) -> None:
    with pytest.raises(errors.InvalidArgument) as invalid:
        await admin.tasks.create("", {"ok": True})
    assert [v.field for v in invalid.value.violations] == ["type"]

    with pytest.raises(errors.InvalidArgument) as not_json:
        await admin.tasks.create("echo", {"when": {1, 2}})
    assert [v.field for v in not_json.value.violations] == ["input.when"]

    done = await admin.tasks.run("echo")
    with pytest.raises(errors.FailedPrecondition, match="already SUCCEEDED"):
        await admin.tasks.cancel(done.id)

    with pytest.raises(errors.InvalidArgument) as bad_graph:
        await admin.workflows.validate(
            {"nodes": [{"id": "a", "type": "echo"}], "edges": [{"source": "a", "target": "b"}]}
        )
    assert [v.field for v in bad_graph.value.violations] == ["definition.edges[0].target"]

    async with Client(address, token="orch_not-a-real-token") as stranger:
        with pytest.raises(errors.Unauthenticated):
            await stranger.tasks.list()
    async with Client(address) as nobody:
        with pytest.raises(errors.Unauthenticated):
            await nobody.whoami()


async def test_workflows_runs_and_their_events(admin: Client) -> None:
    workflow = await admin.workflows.create("sdk-double", DEFINITION, "doubles a number")
    assert (workflow.version, [n.id for n in workflow.definition.nodes]) == (
        1,
        ["double", "report"],
    )
    with pytest.raises(errors.AlreadyExists):
        await admin.workflows.create("sdk-double", DEFINITION)
    assert (await admin.workflows.find("sdk-double")).id == workflow.id
    assert await admin.workflows.validate(DEFINITION) == ["double", "report"]

    async with admin.workflows.execute(workflow.id, {"why": "test"}) as stream:
        events = [event async for event in stream]
    assert stream.run_id
    assert events[0].type is WorkflowEventType.RUN_STARTED
    assert events[-1].type is WorkflowEventType.RUN_SUCCEEDED
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))

    run = await admin.runs.get(stream.run_id)
    assert run.status is RunStatus.SUCCEEDED and run.input == {"why": "test"}
    assert run.node("report").status is NodeStatus.SUCCEEDED
    assert run.node("report").output == {"n": 42}
    replayed = [e async for e in admin.runs.watch(run.id)]
    assert replayed == events
    listed = await admin.runs.list(workflow_id=workflow.id, status="SUCCEEDED")
    assert [r.id for r in listed.items] == [run.id]

    second = await admin.workflows.update(workflow.id, DEFINITION, "version two")
    assert second.version == 2
    assert (await admin.workflows.get(workflow.id, version=1)).description == "doubles a number"
    finished = await admin.workflows.run(workflow.id, {}, version=1)
    assert (finished.workflow_version, finished.status) == (1, RunStatus.SUCCEEDED)


async def test_users_tokens_and_the_server(admin: Client, address: str) -> None:
    member = await admin.users.create("sdk-member", "member-password-1")
    assert (member.role, member.disabled) == ("member", False)
    assert (await admin.users.find("sdk-member")).id == member.id

    async with Client(address) as client:
        await client.login("sdk-member", "member-password-1")
        assert (await client.whoami()).user.username == "sdk-member"
        with pytest.raises(errors.PermissionDenied):
            await client.users.list()
        created = await client.tokens.create("automation", "api", expires_in=3600)
        assert created.token.startswith(created.api_token.prefix)
        assert created.api_token.expires_at is not None
        async with Client(address, token=created.token) as automation:
            who = await automation.whoami()
            assert (who.credential, who.scope, who.user.id) == ("api_token", "api", member.id)
        revoked = await client.tokens.revoke(created.api_token.id)
        assert revoked.revoked_at is not None
        assert [t.id for t in await client.tokens.list()] == [created.api_token.id]

        assert (await admin.users.disable(member.id)).disabled
        with pytest.raises(errors.Unauthenticated):
            await client.whoami()  # its session ended, and cannot be refreshed

    health = await admin.health()
    assert health.status == "SERVING" and health.metadata["database"] == "reachable"
    workers = await admin.workers()
    assert [w.task_types for w in workers] == [("echo", "fail", "sleep")]


def test_the_sync_facade_for_scripts(address: str) -> None:
    with SyncClient(address) as client:
        client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        assert client.whoami().user.username == ADMIN_USERNAME
        task = client.run_task("echo", {"from": "a script"})
        assert (task.status, task.output) == (TaskStatus.SUCCEEDED, {"from": "a script"})
        kinds = [e.type for e in client.watch_task(task.id)]
        assert kinds[-1] is TaskEventType.SUCCEEDED
        client.run(client.aio.workflows.create("sdk-sync", DEFINITION))
        run = client.run_workflow("sdk-sync", {"k": 1})
        assert run.status is RunStatus.SUCCEEDED
        assert client.get_run(run.id).node("report").output == {"n": 42}
