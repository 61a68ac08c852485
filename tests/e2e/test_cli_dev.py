"""`orchestrator dev`, as a newcomer runs it: its Ctrl+C follows the
documented shutdown order with a task running, it logs `shutdown complete`
like `serve`, and starting it again does not pile up demo worker tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import CONNECTED, SERVER_ENV
from tests.e2e.test_cli_commands import CLI_TIMEOUT, STARTUP_TIMEOUT, cli, login, user_env
from tests.e2e.test_cli_follow import cli_process
from tests.support.database import temporary_database
from tests.support.server import ServerProcess

# The dashboard's port is not what these tests are about: any free one.
DEV_ENV = {**SERVER_ENV, "ORCHESTRATOR_HTTP_PORT": "0"}


def first_line(server: ServerProcess, text: str) -> int:
    found = [i for i, line in enumerate(server.lines) if text in line]
    assert found, f"{text!r} not logged:\n{server.log}"
    return found[0]


@pytest.mark.any_database
def test_dev_restarts_reuse_no_token_and_stop_in_the_documented_order(tmp_path: Path) -> None:
    with temporary_database(tmp_path) as url:
        with ServerProcess(url, DEV_ENV, args=("dev",)) as first:
            first.start(STARTUP_TIMEOUT).wait_for_log(CONNECTED, STARTUP_TIMEOUT)
            env = user_env(first, tmp_path / "config")
            login(env)
            sleep = '{"seconds": 60}'
            with cli_process("task", "run", "sleep", "--input", sleep, env=env) as run:
                run.wait_for_log(r"started, attempt 1", CLI_TIMEOUT)
                first.interrupt()  # Ctrl+C
                assert first.wait(CLI_TIMEOUT) == 0, first.log
        print("--- first dev log:", first.log, sep="\n")
        # Health first, then the workers are told to drain, the demo worker
        # hands its task back, and the server stops.
        order = [
            first_line(first, text)
            for text in (
                "shutdown: health NOT_SERVING",
                "shutdown: workers told to drain",
                "draining reason=stop",
                "handed back: grace period over",
                "shutdown: gRPC server stopped",
                "shutdown complete",
            )
        ]
        assert order == sorted(order), first.log
        assert first.lines[-1].endswith("shutdown complete"), first.log
        assert "reconnecting" not in first.log and "cannot connect" not in first.log

        with ServerProcess(url, DEV_ENV, args=("dev",)) as second:
            second.start(STARTUP_TIMEOUT).wait_for_log(CONNECTED, STARTUP_TIMEOUT)
            env = user_env(second, tmp_path / "config-2")
            login(env)
            tokens = cli("token", "list", "-o", "json", env=env)
            assert tokens.code == 0, tokens.stderr
            dev_tokens = [t for t in tokens.json() if t["name"] == "dev demo worker"]
            assert len(dev_tokens) == 2
            assert len([t for t in dev_tokens if not t["revoked_at"]]) == 1
        print("--- second dev log:", second.log, sep="\n")
