"""The system under test, set up fresh for one run and always torn down:
a temporary directory, a fresh database, one server and one worker process.

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import grpc

from bench._procs import Child, ChildExited, child_env, log, process_cpu_seconds

Database = Literal["sqlite", "postgres"]

HOST = "127.0.0.1"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "bench-password-1"
JWT_SECRET = "bench-jwt-secret-0123456789-abcdefghijkl"  # 40 characters
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
SERVER_START_SECONDS = 60.0
STOP_SECONDS = 15.0

assert len(JWT_SECRET) == 40


@dataclass
class Options:
    database: Database
    slots: int
    keep: bool = False
    # Where to write a cProfile of the server (None: not profiled).
    profile_path: Path | None = None
    # Metrics on (ORCHESTRATOR_HTTP_PORT, any free port) or off (the default).
    metrics: bool = False


class Stack:
    """Temp dir, database, server and (once it has a token) the worker."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.workdir = workdir
        self.database_url = ""
        self.server: Child | None = None
        self.worker: Child | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start_server(self) -> None:
        # INFO, not WARNING: `listening on HOST:PORT` (how a parent learns the
        # port picked for ORCHESTRATOR_PORT=0) is an INFO line. The server logs
        # nothing per task at INFO; `server_log_lines` checks that it stays so.
        env = child_env(
            {
                "ORCHESTRATOR_HOST": HOST,
                "ORCHESTRATOR_PORT": "0",
                "DATABASE_URL": self.database_url,
                "JWT_SECRET": JWT_SECRET,
                "ORCHESTRATOR_ADMIN_USERNAME": ADMIN_USERNAME,
                "ORCHESTRATOR_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "ORCHESTRATOR_LOG_LEVEL": "INFO",
                "ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "2",
                **({"ORCHESTRATOR_HTTP_PORT": "0"} if self.options.metrics else {}),
            }
        )
        argv = [sys.executable]
        if self.options.profile_path is not None:
            argv += ["-m", "cProfile", "-o", str(self.workdir / "server.prof")]
        argv += ["-m", "orchestrator", "serve"]
        self.server = Child("server", argv, env, self.workdir, self.workdir / "server.log")
        match = self.server.wait_for_line(LISTENING, SERVER_START_SECONDS)
        self.port = int(match.group(1))
        log(f"server pid {self.server.pid} listening on {self.address}")

    def start_worker(self, token: str) -> None:
        env = child_env(
            {
                "ORCHESTRATOR_URL": self.address,
                "ORCHESTRATOR_TOKEN": token,
                "ORCHESTRATOR_LOG_LEVEL": "WARNING",
            }
        )
        argv = [sys.executable, "-m", "orchestrator", "worker", "--demo"]
        argv += ["--slots", str(self.options.slots), "--name", "bench-w1"]
        self.worker = Child("worker", argv, env, self.workdir, self.workdir / "worker.log")
        log(f"worker pid {self.worker.pid} started with {self.options.slots} slots")

    def check_alive(self) -> None:
        for child in (self.server, self.worker):
            if child is not None:
                child.check_alive()

    def cpu_seconds(self) -> dict[str, float | None]:
        """CPU seconds used so far by the server, the worker and this process
        (the client); None where unknown."""
        return {
            "server": self.server.cpu_seconds() if self.server else None,
            "worker": self.worker.cpu_seconds() if self.worker else None,
            "client": process_cpu_seconds(os.getpid()),
        }

    def server_log_lines(self) -> int:
        return len(self.server.lines()) if self.server is not None else 0

    def stop(self) -> None:
        """Worker first (so the server sees no disconnect storm), then server."""
        for child in (self.worker, self.server):
            if child is not None:
                code = child.stop(STOP_SECONDS)
                log(f"{child.name} (pid {child.pid}) stopped, exit code {code}")

    def dump_logs(self) -> None:
        for child in (self.server, self.worker):
            if child is not None:
                log(f"last lines of the {child.name} log:\n{child.tail()}")

    def save_profile(self) -> None:
        target = self.options.profile_path
        source = self.workdir / "server.prof"
        if target is None:
            return
        if source.exists():
            shutil.copyfile(source, target)
            log(f"server profile written to {target}")
        else:
            log("no server profile was written (did the server exit cleanly?)")


@contextlib.contextmanager
def running_stack(options: Options) -> Iterator[Stack]:
    """A fresh stack; on exit, whatever happened: processes stopped, database
    dropped, temp dir removed (unless `keep`)."""
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    stack = Stack(options, workdir)
    postgres_db: str | None = None
    ok = False
    try:
        if options.database == "sqlite":
            stack.database_url = f"sqlite:{workdir / 'bench.db'}"
        else:
            postgres_db = f"orch_bench_{secrets.token_hex(6)}"
            asyncio.run(_postgres(f'CREATE DATABASE "{postgres_db}"'))
            stack.database_url = f"postgresql://postgres@127.0.0.1:5432/{postgres_db}"
        log(f"workdir {workdir}, database {stack.database_url}")
        stack.start_server()
        yield stack
        ok = True
    finally:
        try:
            if not ok:
                stack.dump_logs()
            stack.stop()
            stack.save_profile()
        finally:
            if postgres_db is not None:
                _drop_postgres(postgres_db)
            if options.keep:
                log(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)


def _drop_postgres(name: str) -> None:
    try:
        asyncio.run(_postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        log(f"dropped database {name}")
    except Exception as exc:  # cleanup must not hide the run's own error
        log(f"could not drop database {name}: {exc}")


async def _postgres(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement, timeout=60)
    finally:
        await conn.close()


class BenchFailure(Exception):
    """The run cannot give a valid result; the message says why."""


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main_of(measure: Callable[[], dict[str, Any]]) -> int:
    """A benchmark's entry point: one JSON line and 0, or a reason and 1."""
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        line = measure()
    except KeyboardInterrupt:
        log("interrupted; everything started was stopped")
        return 130
    except (BenchFailure, ChildExited, TimeoutError, grpc.RpcError) as exc:
        log(f"FAILED: {exc}")
        return 1
    print(json.dumps(line), flush=True)
    return 0
