"""Following a task from the CLI, as a user would: `task start` of a pending
task, `task watch` on one that nobody started yet, Ctrl+C, and a server
restart under an open `task run`. The CLI runs as a subprocess whose stderr
(where the live view goes) is read line by line while it runs; not being a
terminal, it gets the one-line-per-event view."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, SERVER_ENV, WorkerProcess
from tests.e2e.test_cli_commands import CLI_TIMEOUT, STARTUP_TIMEOUT, cli, login, user_env
from tests.support.database import temporary_database
from tests.support.server import ServerProcess
from tests.support.terminal import Terminal

ORCHESTRATOR = (sys.executable, "-m", "orchestrator")


def cli_process(*args: str, env: dict[str, str]) -> ServerProcess:
    """`orchestrator ARGS...` started in the background, its stderr read as it comes."""
    return ServerProcess("unused", env={**env, "DATABASE_URL": None}, args=args, cwd=REPO).launch()


def start_worker(server: ServerProcess, env: dict[str, str]) -> WorkerProcess:
    created = cli("token", "create", "follow-demo-worker", "--scope", "worker", env=env)
    assert created.code == 0, created.stderr
    worker = WorkerProcess(server, created.stdout.strip(), ("--demo", "--slots", "4"))
    return worker.launch().connected(STARTUP_TIMEOUT)


@pytest.fixture(scope="module")
def admin_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server with a demo worker, and the environment of a logged-in admin."""
    directory = tmp_path_factory.mktemp("follow")
    with temporary_database(directory) as url, ServerProcess(url, env=SERVER_ENV) as server:
        server.start(STARTUP_TIMEOUT)
        env = user_env(server, directory / "config")
        login(env)
        worker = start_worker(server, env)
        try:
            yield env
        finally:
            worker.finish()
            print("--- server log:", server.log, sep="\n")


@pytest.mark.any_database
def test_watch_on_a_pending_task_says_how_to_start_it_and_follows_it(
    admin_env: dict[str, str],
) -> None:
    created = cli("task", "create", "echo", "--input", '{"w": 1}', "-o", "json", env=admin_env)
    assert created.code == 0, created.stderr
    task_id = created.json()["id"]

    with cli_process("task", "watch", task_id, env=admin_env) as watching:
        said = watching.wait_for_log(r"is PENDING: .*", CLI_TIMEOUT).group(0)
        assert f"orchestrator task start {task_id}" in said
        started = cli("task", "start", task_id, "-o", "json", env=admin_env)
        assert started.code == 0, started.stderr
        assert started.json()["status"] == "QUEUED"
        assert started.stderr == ""
        assert watching.wait(CLI_TIMEOUT) == 0, watching.log
    assert f"task {task_id} (echo) succeeded" in watching.stdout
    assert "  queued" in watching.lines and "  succeeded" in watching.lines

    again = cli("task", "start", task_id, env=admin_env)
    assert again.code == 2
    assert again.stderr.startswith(f"orchestrator: task {task_id} is already SUCCEEDED")
    assert again.stderr.count("\n") == 1


@pytest.mark.any_database
def test_task_start_leaves_a_queued_task_as_it_is(admin_env: dict[str, str]) -> None:
    queued = cli("task", "create", "nobody-serves-this", "--start", "-o", "json", env=admin_env)
    task_id = queued.json()["id"]

    done = cli("task", "start", task_id, "-o", "json", env=admin_env)

    assert done.code == 0, done.stderr
    assert done.json()["status"] == "QUEUED"
    assert done.stderr == f"task {task_id} was already QUEUED: nothing to start\n"
    assert cli("task", "cancel", task_id, env=admin_env).code == 0
    unknown = cli("task", "start", "no-such-task", env=admin_env)
    assert (unknown.code, unknown.stderr) == (2, "orchestrator: task no-such-task not found\n")


@pytest.mark.any_database
def test_ctrl_c_stops_following_with_exit_130_and_the_task_goes_on(
    admin_env: dict[str, str],
) -> None:
    with cli_process("task", "run", "sleep", "--input", '{"seconds": 60}', env=admin_env) as run:
        task_id = run.wait_for_log(r"^task (\S+) \(sleep\)", CLI_TIMEOUT).group(1)
        run.wait_for_log(r"started, attempt 1", CLI_TIMEOUT)
        run.interrupt()
        assert run.wait(CLI_TIMEOUT) == 130
    assert (
        run.lines[-1] == f"stopped following; the task goes on: orchestrator task watch {task_id}"
    )
    assert "Traceback" not in run.log
    shown = cli("task", "get", task_id, "-o", "json", env=admin_env).json()
    assert shown["status"] == "RUNNING"
    assert cli("task", "cancel", task_id, env=admin_env).code == 0


@dataclass
class Outage:
    """A server with a demo worker, a logged-in admin's environment, and the
    means to stop the server and start it again on the same port and database."""

    env: dict[str, str]
    stop: Callable[[], object]
    start_again: Callable[[], object]


@contextlib.contextmanager
def outage(tmp_path: Path) -> Iterator[Outage]:
    with temporary_database(tmp_path) as url:
        servers = [ServerProcess(url, env=SERVER_ENV).start(STARTUP_TIMEOUT)]
        worker: WorkerProcess | None = None

        def start_again() -> ServerProcess:
            same_port = {**SERVER_ENV, "ORCHESTRATOR_PORT": str(servers[0].port)}
            servers.append(ServerProcess(url, env=same_port).start(STARTUP_TIMEOUT))
            return servers[-1]

        try:
            env = user_env(servers[0], tmp_path / "config")
            login(env)
            worker = start_worker(servers[0], env)
            yield Outage(env, servers[0].stop, start_again)
        finally:
            if worker is not None:
                worker.finish()
            for server in servers:
                server.stop()
                print("--- server log:", server.log, sep="\n")


SLEEP = ("task", "run", "sleep", "--input", '{"seconds": 3}')


@pytest.mark.any_database
def test_task_run_rides_out_a_server_restart_with_one_line_each_way(tmp_path: Path) -> None:
    """The server stops under an open `task run` and comes back on the same
    port and database: one line says it is lost, one that it is back, and the
    run goes on to the task's end."""
    with outage(tmp_path) as stack, cli_process(*SLEEP, env=stack.env) as run:
        run.wait_for_log(r"started, attempt 1", CLI_TIMEOUT)
        stack.stop()
        run.wait_for_log(r"server unreachable", CLI_TIMEOUT)
        stack.start_again()
        assert run.wait(CLI_TIMEOUT) == 0, run.log
    lines = run.lines
    lost = [line for line in lines if "server unreachable" in line]
    assert lost == ["server unreachable (server shutting down), retrying …"], run.log
    back = [m for line in lines if (m := re.fullmatch(r"server back after (\d+) retr.*", line))]
    assert len(back) == 1, run.log
    # Retried more than once, and said so once.
    assert int(back[0].group(1)) >= 2, run.log
    assert not [line for line in lines if "stream lost" in line], run.log
    assert "succeeded" in run.stdout


@pytest.mark.any_database
def test_on_a_terminal_the_outage_is_one_line_counted_in_place(tmp_path: Path) -> None:
    with outage(tmp_path) as stack, Terminal(ORCHESTRATOR + SLEEP, stack.env) as term:
        term.wait_for(r"started, attempt 1", CLI_TIMEOUT)
        stack.stop()
        term.wait_for(r"retrying \(2\)", CLI_TIMEOUT)
        during = [line for line in term.screen() if "server unreachable" in line]
        assert len(during) == 1, term.output
        assert re.fullmatch(r"server unreachable, retrying \(\d+\) …", during[0]), during
        stack.start_again()
        assert term.wait(CLI_TIMEOUT) == 0, term.output
    screen = term.screen()
    assert not [line for line in screen if "server unreachable" in line], screen
    assert len([line for line in screen if line.startswith("server back after")]) == 1, screen
    # The one line counted on: several counts were drawn over each other.
    assert len(set(re.findall(r"retrying \((\d+)\)", term.output))) >= 2, term.output
    # The bar that was left finished: the task handed back started it again.
    bars = [line for line in screen if "━" in line]
    assert len(bars) == 1 and "succeeded" in bars[0] and "100%" in bars[0], screen


@pytest.mark.any_database
def test_ctrl_c_on_a_terminal_takes_the_live_view_off_the_screen(
    admin_env: dict[str, str],
) -> None:
    sleep = ("task", "run", "sleep", "--input", '{"seconds": 60}')
    with Terminal(ORCHESTRATOR + sleep, admin_env) as term:
        term.wait_for(r"slept", CLI_TIMEOUT)  # the bar moves
        term.interrupt()
        assert term.wait(CLI_TIMEOUT) == 130
    screen = term.screen()
    stopped = re.fullmatch(
        r"stopped following; the task goes on: orchestrator task watch (\S+)", screen[-1]
    )
    assert stopped, screen
    assert not [line for line in screen if "━" in line or "slept" in line], screen
    assert cli("task", "cancel", stopped.group(1), env=admin_env).code == 0
