"""`orchestrator schedule ...` end to end, run as a user would (a subprocess
per command, see test_cli_commands), against a real server and demo
worker: tables and JSON, fires that start real tasks and runs, and bad
input that exits 2 with one line per problem."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import WorkerProcess
from tests.e2e.test_cli_commands import cli, login, user_env
from tests.support.server import ServerProcess

pytestmark = pytest.mark.any_database

FLOW = """\
name: cli-scheduled-flow
definition:
  nodes:
    - {id: only, type: echo, input_expression: "{'who': input.who}"}
"""


@pytest.fixture(scope="module")
def orchestrator(shared_orchestrator: ServerProcess) -> ServerProcess:
    return shared_orchestrator


@pytest.fixture(scope="module")
def env(
    orchestrator: ServerProcess,
    demo_worker: WorkerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """A logged-in admin's environment, with the demo worker serving."""
    admin = user_env(orchestrator, tmp_path_factory.mktemp("schedules-config"))
    login(admin)
    yield admin


def iso(value: datetime) -> str:
    return value.isoformat()


def test_an_every_minute_schedule_listed_shown_paused_resumed_deleted(
    env: dict[str, str],
) -> None:
    before = datetime.now(UTC)
    created = cli(
        "schedule", "create", "cli-heartbeat", "--every", "1m", "--task", "echo",
        "--input", '{"ping": 1}', "-o", "json", env=env,
    )  # fmt: skip

    assert created.code == 0, created.stderr
    schedule = created.json()
    assert schedule["interval_seconds"] == 60 and schedule["cron"] == ""
    assert schedule["task"]["type"] == "echo" and schedule["task"]["input"] == {"ping": 1}
    first = datetime.fromisoformat(schedule["next_fire_times"][0])
    assert before + timedelta(seconds=59) <= first <= datetime.now(UTC) + timedelta(seconds=60)

    table = cli("schedule", "list", env=env)
    assert table.code == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID",
        "NAME",
        "SPEC",
        "ZONE",
        "PAUSED",
        "NEXT",
        "FIRE",
        "LAST",
        "FIRED",
    ]
    (row,) = [r for r in rows if schedule["id"] in r]
    assert "cli-heartbeat" in row and "every 1m" in row and "UTC" in row
    assert first.astimezone().strftime("%Y-%m-%d %H:%M:%S") in row
    listed = cli("schedule", "list", "-o", "json", env=env).json()
    assert [s["name"] for s in listed if s["id"] == schedule["id"]] == ["cli-heartbeat"]

    shown = cli("schedule", "get", "cli-heartbeat", env=env)
    assert shown.code == 0, shown.stderr
    assert f"id          {schedule['id']}" in shown.stdout
    assert "spec        every 1m" in shown.stdout
    assert 'starts      task echo {"ping": 1}' in shown.stdout
    shown_times = shown.stdout.split("next fires")[1].split()
    # Each "YYYY-MM-DD HH:MM:SS" is two words; up to five times, a minute apart.
    assert 2 <= len(shown_times) <= 10 and len(shown_times) % 2 == 0

    paused = cli("schedule", "pause", schedule["id"], "--note", "maintenance", env=env)
    assert paused.code == 0, paused.stderr
    assert paused.stdout == "Paused schedule cli-heartbeat.\n"
    after_pause = cli("schedule", "get", schedule["id"], "-o", "json", env=env).json()
    assert after_pause["paused"] is True and after_pause["note"] == "maintenance"
    assert after_pause["next_fire_times"] == []
    (row,) = [r for r in cli("schedule", "list", env=env).stdout.splitlines() if "cli-heart" in r]
    assert "paused" in row

    resumed = cli("schedule", "resume", "cli-heartbeat", "-o", "json", env=env)
    assert resumed.code == 0, resumed.stderr
    assert resumed.json()["paused"] is False and resumed.json()["next_fire_times"]

    deleted = cli("schedule", "delete", "cli-heartbeat", env=env)
    assert deleted.stdout == f"Deleted schedule cli-heartbeat ({schedule['id']}).\n"
    gone = cli("schedule", "get", schedule["id"], env=env)
    assert gone.code == 2
    assert gone.stderr == f"orchestrator: no schedule is named {schedule['id']!r} or has that id\n"


def test_a_cron_schedule_triggered_and_backfilled(env: dict[str, str]) -> None:
    created = cli(
        "schedule", "create", "cli-daily", "--cron", "15 9 * * *", "--tz", "Asia/Kolkata",
        "--task", "echo", "--title", "daily echo", "--input", '{"d": 1}', env=env,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    assert "spec        15 9 * * *" in created.stdout
    assert "zone        Asia/Kolkata" in created.stdout

    fired = cli("schedule", "trigger", "cli-daily", "-o", "json", env=env)
    assert fired.code == 0, fired.stderr
    task_id = fired.json()["task_id"]
    assert task_id and fired.json()["run_id"] == ""
    watched = cli("task", "watch", task_id, "-o", "json", env=env)
    assert watched.code == 0, watched.stderr
    assert watched.json()["title"] == "daily echo" and watched.json()["output"] == {"d": 1}
    told = cli("schedule", "trigger", "cli-daily", env=env)
    assert told.stdout.startswith("Fired schedule cli-daily: task ")

    now = datetime.now(UTC)
    start, end = iso(now - timedelta(days=3)), iso(now)
    backfilled = cli("schedule", "backfill", "cli-daily", "--from", start, "--to", end, env=env)
    assert backfilled.code == 0, backfilled.stderr
    header, *rows = backfilled.stdout.splitlines()
    assert header.split() == ["SCHEDULED", "AT", "STARTED"]
    assert len(rows) == 3 and all(" task " in r for r in rows)
    again = cli(
        "schedule", "backfill", "cli-daily", "--from", start, "--to", end, "-o", "json", env=env
    )
    assert again.code == 0 and again.json() == []
    empty = cli("schedule", "backfill", "cli-daily", "--from", start, "--to", end, env=env)
    assert empty.stdout == "" and empty.stderr.startswith("nothing to fire")
    assert cli("schedule", "delete", "cli-daily", env=env).code == 0


def test_a_workflow_schedule_by_name(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW)
    made = cli("workflow", "create", "-f", str(path), "-o", "json", env=env)
    assert made.code == 0, made.stderr

    created = cli(
        "schedule", "create", "cli-flow", "--cron", "@hourly", "--workflow", "cli-scheduled-flow",
        "--input", '{"who": "cron"}', "--overlap", "buffer-one", "--jitter", "1m",
        "--paused", "-o", "json", env=env,
    )  # fmt: skip
    assert created.code == 0, created.stderr
    schedule = created.json()
    assert schedule["workflow_id"] == made.json()["id"] and schedule["input"] == {"who": "cron"}
    assert schedule["overlap"] == "BUFFER_ONE" and schedule["jitter_seconds"] == 60
    assert schedule["paused"] is True and schedule["next_fire_times"] == []

    fired = cli("schedule", "trigger", schedule["id"], "-o", "json", env=env)
    assert fired.code == 0, fired.stderr
    run_id = fired.json()["run_id"]
    watched = cli("workflow", "watch", run_id, "-o", "json", env=env)
    assert watched.code == 0, watched.stderr
    assert watched.json()["nodes"][0]["output"] == {"who": "cron"}
    assert cli("schedule", "delete", "cli-flow", env=env).code == 0


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--cron", "@daily", "--every", "1m", "--task", "echo"), "give one of --cron EXPR and"),
        (("--every", "1m"), "give one of --task TYPE and --workflow"),
        (("--every", "1q", "--task", "echo"), "--every '1q': expected a duration such as 30s"),
        (("--every", "\u00b2", "--task", "echo"), "--every '\u00b2': expected a duration such"),
        (("--every", "\u00b2m", "--task", "echo"), "--every '\u00b2m': expected a duration"),
        (("--every", "99999999999d", "--task", "echo"), "--every '99999999999d': too long"),
        (("--every", "1m", "--task", "echo", "--jitter", "9" * 30), f"--jitter '{'9' * 30}': too"),
        (("--every", "1m", "--task", "echo", "--start", "soon"), "--start 'soon': expected an"),
        (("--every", "1m", "--task", "echo", "-i", "[1]"), "--input must be a JSON object"),
        (("--every", "1m", "--workflow", "nowhere"), "no workflow is named 'nowhere'"),
    ],
)
def test_bad_usage_exits_2_in_one_line(
    env: dict[str, str], args: tuple[str, ...], complaint: str
) -> None:
    done = cli("schedule", "create", "cli-bad", *args, env=env)

    assert done.code == 2
    assert done.stderr.startswith(f"orchestrator: {complaint}"), done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_what_the_server_refuses_exits_2_listing_each_field(env: dict[str, str]) -> None:
    done = cli(
        "schedule", "create", "cli-refused", "--cron", "61 * * * *", "--tz", "Mars/Olympus_Mons",
        "--task", "echo", "--jitter", "2h", env=env,
    )  # fmt: skip

    assert done.code == 2
    head, *lines = done.stderr.splitlines()
    assert head == "orchestrator: invalid input:"
    fields = [line.split(":")[0].strip() for line in lines]
    assert {"cron", "time_zone", "jitter_seconds"} <= set(fields)
    assert all(line.startswith("  ") for line in lines)
    assert "cli-refused" not in cli("schedule", "list", env=env).stdout

    overlap = cli(
        "schedule", "create", "x", "--every", "1m", "--task", "echo", "--overlap", "all", env=env
    )
    assert overlap.code == 2 and "--overlap" in overlap.stderr
    taken = cli("schedule", "create", "cli-taken", "--every", "1h", "--task", "echo", env=env)
    assert taken.code == 0, taken.stderr
    again = cli("schedule", "create", "cli-taken", "--every", "1h", "--task", "echo", env=env)
    assert again.code == 2 and again.stderr.startswith("orchestrator: ")
    assert cli("schedule", "delete", "cli-taken", env=env).code == 0
