"""Prometheus metrics at /metrics on ORCHESTRATOR_HTTP_PORT: the real server
scraped over HTTP, the text parsed by prometheus_client's own parser, and
counters checked to move by what known work adds."""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.proto import tasks_pb2, tasks_pb2_grpc
from tests.e2e.conftest import (
    CALL_TIMEOUT,
    SERVER_ENV,
    Client,
    RawWorker,
    WorkerFactory,
    of_type,
    read_until,
    refused,
)
from tests.e2e.workflow_helpers import Flows, edge, kinds, node
from tests.support.server import LISTENING, ServerExited, ServerProcess

METRICS_ON = {"ORCHESTRATOR_HTTP_PORT": "0"}
METRICS_URL = re.compile(r"metrics on (http://127\.0\.0\.1:(\d+)/metrics)")
TASKS = "orchestrator.tasks.TaskService"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        body: bytes = response.read()
    return body.decode()


async def scrape(server: ServerProcess) -> Samples:
    """Every sample of the server's /metrics, by name and labels."""
    url = server.wait_for_log(METRICS_URL).group(1)
    text = await asyncio.to_thread(_fetch, url)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def label_sets(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(have) for (n, have), _ in samples.items() if n == name]


async def run_to_end(admin: Client, type: str, input: dict[str, object], **fields: object) -> None:
    task = await admin.create(type, input, start=True, **fields)
    # To the stream's end, status included: the server has closed it by then.
    await admin.watch(task.id)


@pytest.mark.server_env(**METRICS_ON)
async def test_task_counters_move_by_the_work_done(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "4")
    before = await scrape(orchestrator)

    await asyncio.gather(*(run_to_end(admin, "echo", {"n": n}) for n in range(10)))
    await run_to_end(admin, "fail", {"message": "on purpose"}, max_attempts=1)
    after = await scrape(orchestrator)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    finished = "orchestrator_tasks_finished_total"
    assert moved(finished, outcome="succeeded", type="echo") == 10
    assert moved(finished, outcome="failed", type="fail") == 1
    assert moved(finished, outcome="succeeded") == 10
    assert moved(finished, outcome="cancelled") == 0
    assert moved("orchestrator_tasks_created_total", type="echo") == 10
    assert moved("orchestrator_tasks_started_total", type="echo") == 10
    assert moved("orchestrator_tasks_started_total", type="fail") == 1
    assert moved("orchestrator_task_retries_total") == 0
    assert moved("orchestrator_transaction_seconds_count") >= 11
    assert moved("orchestrator_group_commit_batch_size_sum") == 11

    handled = "grpc_server_handled_total"
    assert moved(handled, grpc_service=TASKS, grpc_method="CreateTask", grpc_code="OK") == 11
    assert moved("grpc_server_started_total", grpc_service=TASKS, grpc_method="CreateTask") == 11
    assert (
        moved("grpc_server_handling_seconds_count", grpc_service=TASKS, grpc_method="CreateTask")
        == 11
    )
    # The watches ended with their tasks: none is open, the worker's stream is.
    assert value(after, "orchestrator_grpc_open_streams", kind="watch") == 0
    assert value(after, "orchestrator_grpc_open_streams", kind="worker") == 1
    assert moved(handled, grpc_service=TASKS, grpc_method="WatchTask", grpc_code="OK") == 11

    # Our series name the replica; the process's own do not.
    (labels,) = label_sets(after, "orchestrator_workers_connected")
    assert set(labels) == {"replica"}
    assert label_sets(after, "process_cpu_seconds_total") == [{}]


@pytest.mark.server_env(**METRICS_ON)
async def test_worker_gauges_and_a_cancelled_task(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    idle = await scrape(orchestrator)
    assert value(idle, "orchestrator_workers_connected") == 0
    assert value(idle, "orchestrator_worker_slots") == 0

    await start_worker("--demo", "--slots", "3")
    task = await admin.create("sleep", {"seconds": 60}, start=True)
    await read_until(admin.watch_call(task.id), of_type("STARTED"))
    busy = await scrape(orchestrator)
    assert value(busy, "orchestrator_workers_connected") == 1
    for task_type in ("echo", "sleep", "fail"):
        assert value(busy, "orchestrator_worker_slots", type=task_type) == 3
    # The demo worker serves all three types with one set of slots.
    assert value(busy, "orchestrator_worker_slots_in_use", type="sleep") == 1

    await admin.cancel(task.id)
    await read_until(admin.watch_call(task.id), of_type("CANCELLED"))
    done = await scrape(orchestrator)
    assert value(done, "orchestrator_tasks_finished_total", outcome="cancelled", type="sleep") == 1
    assert value(done, "orchestrator_worker_slots_in_use", type="sleep") == 0


@pytest.mark.server_env(**METRICS_ON)
async def test_a_refused_call_is_counted_with_its_code(
    orchestrator: ServerProcess, admin: Client
) -> None:
    stub = tasks_pb2_grpc.TaskServiceStub(admin.channel)
    error = await refused(stub.ListTasks(tasks_pb2.ListTasksRequest(), timeout=CALL_TIMEOUT))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    missing = await refused(admin.get("no-such-task"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND

    samples = await scrape(orchestrator)
    handled = "grpc_server_handled_total"
    labels = {"grpc_service": TASKS, "grpc_type": "unary"}
    assert value(samples, handled, grpc_method="ListTasks", grpc_code="UNAUTHENTICATED") == 1
    assert value(samples, handled, grpc_method="ListTasks", **labels) == 1
    assert value(samples, handled, grpc_method="GetTask", grpc_code="NOT_FOUND", **labels) == 1
    login = {"grpc_service": "orchestrator.auth.AuthService", "grpc_method": "Login"}
    assert value(samples, handled, grpc_code="OK", **login) == 1


@pytest.mark.server_env(**METRICS_ON)
async def test_queue_depth_counts_tasks_no_worker_serves(
    orchestrator: ServerProcess, admin: Client
) -> None:
    for n in range(3):
        await admin.create("nobody-serves-this", {"n": n}, start=True)
    await admin.create("nobody-serves-this", {"n": 3})  # PENDING: not queued
    samples = await scrape(orchestrator)
    assert value(samples, "orchestrator_queue_depth", type="nobody-serves-this") == 3
    assert value(samples, "orchestrator_queue_not_due", type="nobody-serves-this") == 0
    age = value(samples, "orchestrator_queue_oldest_age_seconds", type="nobody-serves-this")
    assert 0 <= age < 600


@pytest.mark.server_env(**METRICS_ON)
async def test_workflow_runs_and_node_hand_offs(
    orchestrator: ServerProcess, admin: Client, start_worker: WorkerFactory
) -> None:
    await start_worker("--demo", "--slots", "2")
    flows = Flows(admin)
    workflow = await flows.create("chain", [node("a"), node("b"), node("c")], [edge("a", "b")])
    events = await flows.execute(workflow.id, {"n": 1})
    assert kinds(events)[-1] == "RUN_SUCCEEDED"

    samples = await scrape(orchestrator)
    assert value(samples, "orchestrator_workflow_runs_started_total") == 1
    assert value(samples, "orchestrator_workflow_runs_finished_total", outcome="succeeded") == 1
    assert value(samples, "orchestrator_workflow_runs_finished_total", outcome="failed") == 0
    # One hand-off per node: a and c from the run's start, b from a's end.
    assert value(samples, "orchestrator_workflow_node_handoff_seconds_count") == 3
    assert value(samples, "orchestrator_tasks_finished_total", outcome="succeeded") == 3


async def _silent_worker(admin: Client, task_type: str) -> RawWorker:
    token = await admin.worker_token(f"silent-{task_type}")
    worker = RawWorker(admin, (("authorization", f"Bearer {token}"),))
    await worker.hello(f"silent-{task_type}", [task_type])
    return worker


@pytest.mark.server_env(
    ORCHESTRATOR_LEASE_SECONDS="2", ORCHESTRATOR_HEARTBEAT_SECONDS="1", **METRICS_ON
)
async def test_lost_deliveries_and_lease_expiries_are_told_apart(
    orchestrator: ServerProcess, admin: Client
) -> None:
    task = await admin.create("lost", start=True)
    watch = admin.watch_call(task.id)
    gone = await _silent_worker(admin, "lost")
    await gone.assignment()
    await gone.close()  # its stream ends with the task held: a lost worker
    silent = await _silent_worker(admin, "lost")
    await silent.assignment()
    # It never heartbeats: the reaper finds its lease lapsed.
    events = await read_until(
        watch, lambda e: of_type("REQUEUED")(e) and e.message == "lease expired", seconds=30
    )
    watch.cancel()
    assert next(e.message for e in events if of_type("REQUEUED")(e)) == "worker disconnected"

    samples = await scrape(orchestrator)
    requeued = "orchestrator_tasks_requeued_total"
    assert value(samples, requeued, type="lost", reason="worker_lost") == 1
    assert value(samples, requeued, type="lost", reason="lease_expired") >= 1
    assert value(samples, requeued, type="lost", reason="handed_back") == 0


async def test_http_listener_is_off_by_default(orchestrator: ServerProcess) -> None:
    assert "ORCHESTRATOR_HTTP_PORT" not in orchestrator.env
    assert not METRICS_URL.search(orchestrator.log), orchestrator.log


def test_a_bad_http_port_stops_start_up_with_exit_2(database_url: str) -> None:
    with ServerProcess(database_url, {"ORCHESTRATOR_HTTP_PORT": "80a"}) as server:
        server.launch()
        assert server.wait(30) == 2
    assert server.lines == [
        "orchestrator: invalid ORCHESTRATOR_HTTP_PORT='80a': "
        + ("Input should be a valid integer, unable to parse string as an integer")
    ]


def test_a_taken_http_port_stops_start_up_with_exit_2(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with ServerProcess(database_url, {"ORCHESTRATOR_HTTP_PORT": str(port)}) as server:
            server.launch()
            with pytest.raises(ServerExited):
                server.wait_for_log(LISTENING, timeout=60)
            assert server.wait(10) == 2
    refusal = [line for line in server.lines if line.startswith("orchestrator: ")]
    assert len(refusal) == 1, server.log
    assert "ORCHESTRATOR_HTTP_PORT" in refusal[0] and f"127.0.0.1:{port}" in refusal[0]
    assert "opening database" not in server.log
    assert "Traceback" not in server.log


@pytest.mark.postgres
@pytest.mark.server_env(ORCHESTRATOR_REPLICA_ID="a", **METRICS_ON)
async def test_each_replica_labels_its_own_and_both_see_the_shared_queue(
    database_url: str, orchestrator: ServerProcess, admin: Client
) -> None:
    env = {**SERVER_ENV, **METRICS_ON, "ORCHESTRATOR_REPLICA_ID": "b"}
    with ServerProcess(database_url, env) as second:
        second.start()
        for n in range(4):
            await admin.create("queued-on-a", {"n": n}, start=True)
        first_samples, second_samples = await scrape(orchestrator), await scrape(second)
    for samples, replica in ((first_samples, "a"), (second_samples, "b")):
        (labels,) = label_sets(samples, "orchestrator_workers_connected")
        assert labels == {"replica": replica}
        # The shared queue, read from the database: the same on both.
        assert value(samples, "orchestrator_queue_depth", type="queued-on-a") == 4
    created = "orchestrator_tasks_created_total"
    assert value(first_samples, created, type="queued-on-a") == 4
    assert value(second_samples, created, type="queued-on-a") == 0
