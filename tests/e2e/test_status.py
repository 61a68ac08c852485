"""`StatusService.GetStatus`, `client.status()` and `orchestrator status`
against a real server: queue depths, workers' slots, and why the oldest
tasks wait (no worker for the type, all slots busy, a start time ahead);
admins only; on PostgreSQL, every replica on the database is listed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from orchestrator.client import Client as SdkClient
from orchestrator.client import ServerStatus
from orchestrator.model import WaitReason
from orchestrator.proto import auth_pb2, status_pb2, status_pb2_grpc, tasks_pb2
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    SERVER_ENV,
    Client,
    WorkerFactory,
    connect,
    fields_of,
    read_until,
    refused,
)
from tests.e2e.test_cli_commands import clean_env, cli
from tests.support.database import backend
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

RUNNING = tasks_pb2.TASK_STATUS_RUNNING
UNSERVED = "nobody-serves-this"
# The server knows only its own workers when replicas may share the database.
WHERE = " on this replica" if backend() == "postgres" else ""
NO_WORKER_TEXT = f"no connected worker serves type {UNSERVED}{WHERE}"
BUSY_TEXT = f"all 1 slots of the workers serving type sleep{WHERE} are busy"
HOUR = duration_pb2.Duration(seconds=3600)


@pytest.fixture
async def sdk(orchestrator: ServerProcess) -> AsyncIterator[SdkClient]:
    assert orchestrator.address
    async with SdkClient(orchestrator.address) as client:
        await client.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        yield client


async def _member(admin: Client, name: str) -> None:
    await admin.auth.CreateUser(
        auth_pb2.CreateUserRequest(username=name, password="member-password-1", role="member"),
        metadata=admin.metadata,
        timeout=CALL_TIMEOUT,
    )


async def _api_token(client: Client) -> str:
    reply = await client.auth.CreateApiToken(
        auth_pb2.CreateApiTokenRequest(name="status-cli", scope="api"),
        metadata=client.metadata,
        timeout=CALL_TIMEOUT,
    )
    return reply.token


async def _busy_worker(admin: Client, start_worker: WorkerFactory) -> tasks_pb2.Task:
    """A demo worker of one slot, running a long sleep: the slot is taken."""
    await start_worker("--demo", "--slots", "1")
    holder = await admin.create("sleep", {"seconds": 60}, start=True)
    await read_until(admin.watch_call(holder.id), lambda e: e.status == RUNNING)
    return holder


def _reasons(status: ServerStatus) -> dict[str, tuple[WaitReason | None, str]]:
    return {t.id: (t.wait_reason, t.waiting) for t in status.oldest_waiting}


async def test_status_shows_queues_workers_and_why_the_oldest_tasks_wait(
    admin: Client, sdk: SdkClient, start_worker: WorkerFactory
) -> None:
    unserved = [await admin.create(UNSERVED, {"i": i}, start=True) for i in range(2)]
    before = await sdk.status()
    assert [(q.type, q.queued, q.not_due) for q in before.queues] == [(UNSERVED, 2, 0)]
    assert before.workers == ()
    assert [t.id for t in before.oldest_waiting] == [t.id for t in unserved]
    assert set(_reasons(before).values()) == {(WaitReason.NO_WORKER, NO_WORKER_TEXT)}

    holder = await _busy_worker(admin, start_worker)
    later = await admin.create("echo", {}, start=True, delay=HOUR)
    blocked = await admin.create("sleep", {"seconds": 1}, start=True)
    status = await sdk.status()

    assert [(q.type, q.queued, q.not_due) for q in status.queues] == [
        ("echo", 1, 1),
        (UNSERVED, 2, 0),
        ("sleep", 1, 0),
    ]
    for queue in status.queues:
        assert queue.oldest_queued_at is not None and status.read_at is not None
        assert queue.oldest_queued_at <= status.read_at
    [worker] = status.workers
    assert (worker.slots, worker.busy_slots) == (1, 1)
    assert set(worker.task_types) == {"echo", "sleep", "fail"}
    reasons = _reasons(status)
    # Oldest first: the running holder is not waiting.
    assert list(reasons) == [*(t.id for t in unserved), later.id, blocked.id]
    assert reasons[unserved[0].id] == (WaitReason.NO_WORKER, NO_WORKER_TEXT)
    assert reasons[blocked.id] == (WaitReason.NO_FREE_SLOT, BUSY_TEXT)
    reason, text = reasons[later.id]
    assert reason is WaitReason.NOT_BEFORE and text.startswith("not before 20")

    limited = await sdk.status(oldest=1)
    assert [t.id for t in limited.oldest_waiting] == [unserved[0].id]
    assert status.version and status.uptime_seconds >= 0
    assert [r.id for r in status.replicas] == [status.replica_id]
    await admin.cancel(holder.id)


async def test_only_admins_may_ask_and_a_bad_limit_is_refused(
    orchestrator: ServerProcess, admin: Client
) -> None:
    await _member(admin, "status-member")
    async with connect(orchestrator, "status-member", "member-password-1") as member:
        stub = status_pb2_grpc.StatusServiceStub(member.channel)
        error = await refused(
            stub.GetStatus(
                status_pb2.GetStatusRequest(), metadata=member.metadata, timeout=CALL_TIMEOUT
            )
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    worker_token = await admin.worker_token()
    stub = status_pb2_grpc.StatusServiceStub(admin.channel)
    as_worker = (("authorization", f"Bearer {worker_token}"),)
    error = await refused(
        stub.GetStatus(status_pb2.GetStatusRequest(), metadata=as_worker, timeout=CALL_TIMEOUT)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(stub.GetStatus(status_pb2.GetStatusRequest(), timeout=CALL_TIMEOUT))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    for bad in (-1, 101):
        error = await refused(
            stub.GetStatus(
                status_pb2.GetStatusRequest(oldest_limit=bad),
                metadata=admin.metadata,
                timeout=CALL_TIMEOUT,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fields_of(error) == ["oldest_limit"]


async def test_the_cli_prints_the_status_for_people_and_scripts(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    unserved = await admin.create(UNSERVED, {}, start=True)
    holder = await _busy_worker(admin, start_worker)
    blocked = await admin.create("sleep", {"seconds": 1}, start=True)
    assert orchestrator.address
    env = clean_env(
        {
            "ORCHESTRATOR_URL": orchestrator.address,
            "ORCHESTRATOR_CONFIG_DIR": str(tmp_path),
            "ORCHESTRATOR_TOKEN": await _api_token(admin),
        }
    )

    shown = await asyncio.to_thread(cli, "status", env=env)
    assert shown.code == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.split()[:3] == [UNSERVED, "1", "0"] for line in lines), shown.stdout
    assert any(line.split()[:3] == ["sleep", "1", "0"] for line in lines), shown.stdout
    assert any("1/1" in line and "echo, fail, sleep" in line for line in lines), shown.stdout
    assert any(unserved.id in line and NO_WORKER_TEXT in line for line in lines), shown.stdout
    assert any(blocked.id in line and BUSY_TEXT in line for line in lines), shown.stdout

    scripted = await asyncio.to_thread(cli, "status", "-o", "json", env=env)
    assert scripted.code == 0, scripted.stderr
    document = scripted.json()
    assert {q["type"]: q["queued"] for q in document["queues"]} == {UNSERVED: 1, "sleep": 1}
    assert [(w["slots"], w["busy_slots"]) for w in document["workers"]] == [(1, 1)]
    assert [(t["id"], t["wait_reason"]) for t in document["oldest_waiting"]] == [
        (unserved.id, "NO_WORKER"),
        (blocked.id, "NO_FREE_SLOT"),
    ]
    await admin.cancel(holder.id)

    await _member(admin, "status-cli-member")
    async with connect(orchestrator, "status-cli-member", "member-password-1") as member:
        member_env = {**env, "ORCHESTRATOR_TOKEN": await _api_token(member)}
    refused_cli = await asyncio.to_thread(cli, "status", env=member_env)
    assert refused_cli.code == 3
    assert refused_cli.stderr.startswith("orchestrator: only an admin may do this")


@pytest.fixture
def second_replica(database_url: str, orchestrator: ServerProcess) -> Iterator[ServerProcess]:
    process = ServerProcess(database_url, env={**SERVER_ENV, "ORCHESTRATOR_REPLICA_ID": "b"})
    try:
        yield process.start()
    finally:
        process.stop()
        print("--- second replica log:", process.log, sep="\n")


@pytest.mark.postgres
async def test_every_replica_on_the_database_is_listed(
    sdk: SdkClient, second_replica: ServerProcess
) -> None:
    first = await sdk.status()
    assert first.replica_id != "b"
    assert second_replica.address
    async with SdkClient(second_replica.address) as other:
        await other.login(ADMIN_USERNAME, ADMIN_PASSWORD)
        second = await other.status()
    assert second.replica_id == "b"
    for status in (first, second):
        assert {r.id for r in status.replicas} == {first.replica_id, "b"}
        assert all(r.connections >= 1 and r.connected_since is not None for r in status.replicas)
