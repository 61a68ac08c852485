"""The client commands end to end, run as a user would: `python -m
orchestrator ...` in a subprocess, against a real server and a demo worker
over loopback, with its own ORCHESTRATOR_CONFIG_DIR. Every run is checked
for a traceback on stderr: a failure must read as one line."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CONNECTED, REPO, SERVER_ENV
from tests.support.database import temporary_database
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME, ServerProcess

# Generous: a loaded CI machine starts a server slowly; a healthy one in about two seconds.
STARTUP_TIMEOUT = 60

CLI_TIMEOUT = 60


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as one JSON document (json.loads refuses anything more)."""
        return json.loads(self.stdout)


def clean_env(extra: Mapping[str, str | None]) -> dict[str, str]:
    """This process's environment without any orchestrator variable a
    developer may have set, plus `extra` (None removes)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("ORCHESTRATOR_") and k.upper() != "DATABASE_URL"
    }
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def cli(*args: str, env: Mapping[str, str], stdin: str | None = None, cwd: Path = REPO) -> Result:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=CLI_TIMEOUT,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return Result(done.returncode, done.stdout, done.stderr)


def user_env(server: ServerProcess, config_dir: Path, **extra: str | None) -> dict[str, str]:
    assert server.address
    return clean_env(
        {"ORCHESTRATOR_URL": server.address, "ORCHESTRATOR_CONFIG_DIR": str(config_dir), **extra}
    )


def login(
    env: Mapping[str, str], username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD
) -> None:
    done = cli("login", "--username", username, "--password-stdin", env=env, stdin=password + "\n")
    assert done.code == 0, done.stderr


# -- one server, one demo worker, one logged-in admin for the module ----------------


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with temporary_database(tmp_path_factory.mktemp("cli-db")) as url:
        process = ServerProcess(url, env=SERVER_ENV)
        try:
            yield process.start(STARTUP_TIMEOUT)
        finally:
            process.stop()
            print("--- server log:", process.log, sep="\n")


@pytest.fixture(scope="module")
def admin_env(
    cli_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = user_env(cli_server, tmp_path_factory.mktemp("admin-config"))
    login(env)
    return env


@dataclass(frozen=True)
class DemoWorker:
    process: ServerProcess
    worker_id: str
    token: str


@pytest.fixture(scope="module")
def demo_worker(cli_server: ServerProcess, admin_env: dict[str, str]) -> Iterator[DemoWorker]:
    """`orchestrator worker --demo`, with a token made by `orchestrator token create`."""
    created = cli("token", "create", "cli-demo-worker", "--scope", "worker", env=admin_env)
    assert created.code == 0, created.stderr
    token = created.stdout.strip()
    assert cli_server.address
    process = ServerProcess(
        "sqlite::memory:",  # unused by a worker; ServerProcess wants one
        env={"ORCHESTRATOR_URL": cli_server.address, "ORCHESTRATOR_TOKEN": token},
        args=("worker", "--demo", "--slots", "4"),
        cwd=REPO,
    )
    process.launch()
    try:
        match = process.wait_for_log(CONNECTED, timeout=STARTUP_TIMEOUT)
        yield DemoWorker(process, match.group(1), token)
    finally:
        process.stop()
        print("--- worker log:", process.log, sep="\n")


# -- sessions --------------------------------------------------------------------------


@pytest.mark.any_database
def test_login_whoami_logout(cli_server: ServerProcess, tmp_path: Path) -> None:
    env = user_env(cli_server, tmp_path / "config")

    wrong = cli("login", "--username", "admin", "--password-stdin", env=env, stdin="nope-nope\n")
    assert wrong.code == 3
    assert wrong.stderr.startswith("orchestrator: invalid username or password")
    login(env)

    session_file = tmp_path / "config" / "session.json"
    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(session_file.parent.stat().st_mode) == 0o700
    who = cli("whoami", "-o", "json", env=env)
    assert who.code == 0, who.stderr
    assert who.json()["user"]["username"] == ADMIN_USERNAME
    assert who.json()["user"]["role"] == "admin"
    assert who.json()["credential"] == "session"

    out = cli("logout", env=env)
    assert out.code == 0, out.stderr
    assert not session_file.exists()
    after = cli("whoami", env=env)
    assert after.code == 3
    assert after.stderr.count("\n") == 1
    assert "not logged in" in after.stderr and "orchestrator login" in after.stderr


@pytest.mark.any_database
def test_unreachable_server_exits_3(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A closed port, and a call that is not retried: the answer is at once.
    env = clean_env({"ORCHESTRATOR_CONFIG_DIR": str(tmp_path), "ORCHESTRATOR_TOKEN": "orch_x"})
    done = cli("task", "cancel", "some-id", "--url", f"127.0.0.1:{port}", env=env)
    assert done.code == 3
    assert done.stderr.startswith(f"orchestrator: cannot reach the server at 127.0.0.1:{port}")


# -- tasks -----------------------------------------------------------------------------


@pytest.mark.any_database
def test_task_run_prints_the_finished_task_as_json(
    admin_env: dict[str, str], demo_worker: DemoWorker
) -> None:
    given = {"n": 3, "ratio": 0.5, "text": "héllo ✓", "nested": {"list": [1, "two", None, True]}}

    done = cli("task", "run", "echo", "--input", json.dumps(given), "-o", "json", env=admin_env)

    assert done.code == 0, done.stderr
    task = done.json()
    assert task["status"] == "SUCCEEDED"
    assert task["output"] == given
    assert task["input"] == given
    assert task["worker_id"] == demo_worker.worker_id
    assert done.stderr == ""  # no live view with -o json


@pytest.mark.any_database
def test_task_run_follows_progress_for_people(
    admin_env: dict[str, str], demo_worker: DemoWorker
) -> None:
    done = cli("task", "run", "sleep", "--input", '{"seconds": 1}', env=admin_env)

    assert done.code == 0, done.stderr
    assert "   50% slept 0.5s of 1s" in done.stderr.splitlines()
    assert "succeeded" in done.stdout and '"slept": 1' in done.stdout


@pytest.mark.any_database
def test_a_failing_task_exits_1(admin_env: dict[str, str], demo_worker: DemoWorker) -> None:
    failing = json.dumps({"message": "boom on purpose", "permanent": True})

    done = cli("task", "run", "fail", "--input", failing, "-o", "json", env=admin_env)

    assert done.code == 1, done.stderr
    assert done.json()["status"] == "FAILED"
    assert done.json()["error"] == "boom on purpose"


@pytest.mark.parametrize(
    ("given", "complaint"),
    [("{bad", "--input is not valid JSON"), ("[1, 2]", "--input must be a JSON object")],
)
@pytest.mark.any_database
def test_bad_input_exits_2(admin_env: dict[str, str], given: str, complaint: str) -> None:
    done = cli("task", "run", "echo", "--input", given, env=admin_env)

    assert done.code == 2
    assert done.stderr.startswith(f"orchestrator: {complaint}")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


@pytest.mark.any_database
def test_task_create_list_get_cancel_delete(admin_env: dict[str, str]) -> None:
    created = cli(
        "task", "create", "nobody-serves-this", "--label", "team=cli", "-o", "json", env=admin_env
    )
    assert created.code == 0, created.stderr
    task_id = created.json()["id"]
    assert created.json()["status"] == "PENDING"

    listed = cli("task", "list", "--label", "team=cli", "-o", "json", env=admin_env)
    assert [t["id"] for t in listed.json()] == [task_id]
    table = cli("task", "list", "--label", "team=cli", env=admin_env)
    assert task_id in table.stdout and "PENDING" in table.stdout

    cancelled = cli(
        "task", "cancel", task_id, "--reason", "not needed", "-o", "json", env=admin_env
    )
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json()["status"] == "CANCELLED"
    again = cli("task", "cancel", task_id, env=admin_env)
    assert again.code == 2
    assert "already CANCELLED" in again.stderr

    assert cli("task", "delete", task_id, env=admin_env).code == 0
    gone = cli("task", "get", task_id, env=admin_env)
    assert gone.code == 2
    assert gone.stderr == f"orchestrator: task {task_id} not found\n"


# -- workflows -------------------------------------------------------------------------

WORKFLOW = """\
name: greet
description: Says hello, then hello again.
definition:
  nodes:
    - id: first
      type: echo
      input: {greeting: hello}
    - id: second
      type: echo
      input_expression: "{'greeting': nodes.first.output.greeting + ', ' + input.name}"
    - id: never
      type: echo
  edges:
    - {source: first, target: second}
    - {source: first, target: never, condition: "input.name == 'nobody'"}
"""


@pytest.mark.any_database
def test_workflow_from_yaml_runs_to_its_result(
    cli_server: ServerProcess, admin_env: dict[str, str], demo_worker: DemoWorker, tmp_path: Path
) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(WORKFLOW)

    created = cli("workflow", "create", "-f", str(path), env=admin_env)
    assert created.code == 0, created.stderr
    assert created.stdout.startswith("Created workflow greet ")
    done = cli(
        "workflow", "run", "greet", "--input", '{"name": "world"}', "-o", "json", env=admin_env
    )

    assert done.code == 0, done.stderr
    run = done.json()
    assert run["status"] == "SUCCEEDED"
    nodes = {n["node_id"]: n for n in run["nodes"]}
    assert nodes["first"]["output"] == {"greeting": "hello"}
    assert nodes["second"]["output"] == {"greeting": "hello, world"}
    assert nodes["never"]["status"] == "SKIPPED"
    runs = cli("workflow", "runs", "greet", "-o", "json", env=admin_env)
    assert [r["id"] for r in runs.json()] == [run["id"]]
    # Each lookup by name tried it as an id first: a refusal the client
    # expects, which the server does not log as a failure.
    refused = [line for line in cli_server.lines if "rpc failed" in line]
    assert not [line for line in refused if "code=NOT_FOUND" in line], cli_server.log


@pytest.mark.any_database
def test_an_invalid_workflow_exits_2_naming_its_fields(
    admin_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "name: broken\n"
        "definition:\n"
        "  nodes: [{id: a, type: echo}, {id: b, type: echo}]\n"
        "  edges: [{source: a, target: nowhere}, {source: a, target: b, condition: '1 +'}]\n"
    )
    misspelt = tmp_path / "misspelt.json"
    misspelt.write_text('{"name": "m", "definition": {"nodes": [{"id": "a", "tpye": "echo"}]}}')

    refused = cli("workflow", "create", "-f", str(broken), env=admin_env)
    local = cli("workflow", "validate", "-f", str(misspelt), env=admin_env)

    assert refused.code == 2
    lines = refused.stderr.splitlines()
    assert lines[0] == f"orchestrator: {broken} is not a valid workflow:"
    assert lines[1] == "  definition.edges[0].target: unknown node 'nowhere'"
    assert lines[2].startswith("  definition.edges[1].condition: ")
    assert local.code == 2
    assert local.stderr.splitlines()[1].startswith("  definition.nodes[0].tpye: unknown field")


# -- accounts --------------------------------------------------------------------------


@pytest.mark.any_database
def test_admin_manages_users_and_tokens(
    cli_server: ServerProcess, admin_env: dict[str, str], tmp_path: Path
) -> None:
    created = cli(
        "user",
        "create",
        "carol",
        "--password-stdin",
        "-o",
        "json",
        env=admin_env,
        stdin="carol-password\n",
    )
    assert created.code == 0, created.stderr
    assert created.json()["role"] == "member"
    member = user_env(cli_server, tmp_path / "carol")
    login(member, "carol", "carol-password")
    refused = cli("user", "list", env=member)
    assert refused.code == 3
    assert refused.stderr == "orchestrator: only an admin may do this\n"

    disabled = cli("user", "disable", "carol", "-o", "json", env=admin_env)
    assert disabled.json()["disabled"] is True
    assert cli("whoami", env=member).code == 3  # a disabled user's sessions end at once

    token = cli("token", "create", "ci", "--scope", "api", "-o", "json", env=admin_env).json()
    as_token = user_env(cli_server, tmp_path / "none", ORCHESTRATOR_TOKEN=token["token"])
    assert cli("whoami", "-o", "json", env=as_token).json()["credential"] == "api_token"
    revoked = cli("token", "revoke", token["api_token"]["id"], env=admin_env)
    assert revoked.code == 0, revoked.stderr
    assert cli("whoami", env=as_token).code == 3


@pytest.mark.any_database
def test_a_worker_token_made_by_the_cli_serves_as_orchestrator_token(
    admin_env: dict[str, str], demo_worker: DemoWorker
) -> None:
    # The module's demo worker runs on a token from `token create --scope worker`.
    assert demo_worker.token.startswith("orch_")
    tokens = cli("token", "list", "-o", "json", env=admin_env).json()
    mine = [t for t in tokens if t["name"] == "cli-demo-worker"]
    assert len(mine) == 1 and mine[0]["scope"] == "worker"
    assert demo_worker.token.startswith(mine[0]["prefix"])
    done = cli("task", "run", "echo", "--input", '{"by": "token"}', "-o", "json", env=admin_env)
    assert done.json()["worker_id"] == demo_worker.worker_id


def test_user_create_local_makes_the_first_admin(database_url: str, tmp_path: Path) -> None:
    # No server, no ORCHESTRATOR_* variables: just the database.
    env = clean_env({"DATABASE_URL": database_url, "HOME": str(tmp_path)})
    created = cli(
        "user",
        "create",
        "root",
        "--role",
        "admin",
        "--password-stdin",
        "--local",
        env=env,
        stdin="root-password-1\n",
        cwd=tmp_path,
    )
    assert created.code == 0, created.stderr
    taken = cli(
        "user",
        "create",
        "root",
        "--password-stdin",
        "--local",
        env=env,
        stdin="root-password-1\n",
        cwd=tmp_path,
    )
    assert taken.code == 2
    assert taken.stderr == "orchestrator: user 'root' already exists\n"

    server = ServerProcess(
        database_url,
        env={
            **SERVER_ENV,
            "ORCHESTRATOR_ADMIN_USERNAME": None,
            "ORCHESTRATOR_ADMIN_PASSWORD": None,
        },
    )
    try:
        server.start(STARTUP_TIMEOUT)
        user = user_env(server, tmp_path / "config")
        login(user, "root", "root-password-1")
        who = cli("whoami", "-o", "json", env=user)
        assert who.json()["user"]["username"] == "root"
        assert who.json()["user"]["role"] == "admin"
    finally:
        server.stop()
        print("--- server log:", server.log, sep="\n")


# -- start times and limits ------------------------------------------------------------


@pytest.mark.any_database
def test_task_create_at_or_in_waits_and_shows_its_start_time(admin_env: dict[str, str]) -> None:
    """--in counts from the request, --at is a time; `task get` shows both,
    with the task's concurrency key and rate bucket."""
    later = cli(
        "task",
        "create",
        "echo",
        "--in",
        "1h30m",
        "--label",
        "case=delayed",
        "-o",
        "json",
        env=admin_env,
    )
    fixed = cli(
        "task",
        "create",
        "echo",
        "--at",
        "2031-01-02T03:04:05Z",
        "--concurrency-key",
        "customer-7",
        "--concurrency-limit",
        "2",
        "--rate-limit-bucket",
        "mail",
        "--rate-limit",
        "100/m",
        "--label",
        "case=delayed",
        "-o",
        "json",
        env=admin_env,
    )
    assert later.code == 0, later.stderr
    assert fixed.code == 0, fixed.stderr
    waits = later.json()
    created = datetime.fromisoformat(waits["created_at"])
    not_before = datetime.fromisoformat(waits["not_before"])
    assert timedelta(minutes=89) < not_before - created <= timedelta(minutes=90)
    task = fixed.json()
    assert task["not_before"] == "2031-01-02T03:04:05+00:00"
    assert (task["concurrency_key"], task["concurrency_limit"]) == ("customer-7", 2)
    assert task["concurrency_strategy"] == "QUEUE"
    assert (task["rate_limit_bucket"], task["rate_limit"]) == ("mail", 100)
    assert task["rate_limit_period"] == "minute"

    shown = cli("task", "get", task["id"], env=admin_env)
    assert shown.code == 0, shown.stderr
    lines = {line.split("  ")[0]: line for line in shown.stdout.splitlines()}
    local = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC).astimezone()
    assert local.strftime("%Y-%m-%d %H:%M:%S") in lines["not before"]
    assert "customer-7 (limit 2, queue)" in lines["concurrency"]
    assert "mail (100 per minute)" in lines["rate limit"]
    for made in (waits, task):
        assert cli("task", "delete", made["id"], env=admin_env).code == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--in", "soon"), "--in 'soon': expected a duration such as 30s"),
        (("--in", "5x"), "--in '5x'"),
        (("--at", "tomorrow"), "--at 'tomorrow': expected an ISO 8601 time"),
        (("--at", "2031-01-02T03:04:05Z", "--in", "5m"), "give --at or --in, not both"),
        (("--concurrency-key", "k"), "--concurrency-key and --concurrency-limit go together"),
        (("--rate-limit", "5/s"), "--rate-limit-bucket and --rate-limit go together"),
        (("--rate-limit-bucket", "b", "--rate-limit", "5/day"), "--rate-limit '5/day'"),
        (("--rate-limit-bucket", "b", "--rate-limit", "0/s"), "expected N/s, N/m or N/h"),
    ],
)
@pytest.mark.any_database
def test_task_create_with_a_bad_time_or_limit_exits_2(
    admin_env: dict[str, str], args: tuple[str, ...], words: str
) -> None:
    done = cli("task", "create", "echo", "--label", "case=refused", *args, env=admin_env)
    assert done.code == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert words in done.stderr
    listed = cli("task", "list", "--label", "case=refused", "-o", "json", env=admin_env)
    assert listed.json() == []


@pytest.mark.any_database
def test_workflow_run_in_waits_and_a_bad_time_exits_2(
    admin_env: dict[str, str], demo_worker: DemoWorker, tmp_path: Path
) -> None:
    path = tmp_path / "later.yaml"
    path.write_text(
        "name: later\n"
        "definition:\n"
        "  nodes:\n"
        "    - {id: only, type: echo, concurrency_key_expression: input.who,\n"
        "       concurrency_limit: 1, rate_limit_bucket_expression: \"'b-' + input.who\",\n"
        "       rate_limit: 3, rate_limit_period: minute}\n"
    )
    assert cli("workflow", "create", "-f", str(path), env=admin_env).code == 0
    daily = tmp_path / "daily.yaml"
    daily.write_text(path.read_text().replace("period: minute", "period: day"))
    refused = cli("workflow", "validate", "-f", str(daily), env=admin_env)
    assert refused.code == 2
    assert refused.stderr.splitlines()[1] == (
        "  definition.nodes[0].rate_limit_period: 'day': name one: second, minute or hour"
    )

    bad = cli("workflow", "run", "later", "--at", "noon", env=admin_env)
    assert bad.code == 2
    assert bad.stderr.startswith("orchestrator: --at 'noon': expected an ISO 8601 time")
    done = cli(
        "workflow",
        "run",
        "later",
        "--in",
        "1s",
        "-i",
        '{"who": "ann"}',
        "-o",
        "json",
        env=admin_env,
    )
    assert done.code == 0, done.stderr
    run = done.json()
    assert run["status"] == "SUCCEEDED"
    assert datetime.fromisoformat(run["not_before"]) - datetime.fromisoformat(
        run["created_at"]
    ) <= timedelta(seconds=1)
    task = cli("task", "get", run["nodes"][0]["task_id"], "-o", "json", env=admin_env).json()
    assert task["not_before"] == run["not_before"]
    assert (task["concurrency_key"], task["rate_limit_bucket"]) == ("ann", "b-ann")
    assert (task["rate_limit"], task["rate_limit_period"]) == (3, "minute")
    assert datetime.fromisoformat(task["started_at"]) >= datetime.fromisoformat(task["not_before"])
