"""`orchestrator serve` as a subprocess, watched through its log.

    server = ServerProcess(database_url, env={"ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS": "5"})
    server.start()                      # waits for "listening on 127.0.0.1:PORT", then SERVING
    ...talk to server.address...
    server.terminate(); assert server.wait(10) == 0
    server.stop()                       # always safe: SIGTERM, then SIGKILL if needed

Only the pid this object started is ever signalled.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

JWT_SECRET = "test-secret-0123456789-abcdefghij-KLMNOP"  # 40 characters
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin-password-1"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
# Logged right after "listening on", once health says SERVING (DESIGN §6).
READY = re.compile(r"health SERVING")

# The server's own variables: never inherited from the environment running the tests.
_SEED_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "JWT_SECRET",
        "JWT_EXPIRATION_SECONDS",
        "MAX_CONNECTIONS",
        "STREAM_BUFFER_SIZE",
    }
)


def _is_server_variable(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("ORCHESTRATOR_") or upper in _SEED_VARIABLES


def server_env(database_url: str, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a test server: the caller's `extra` wins, and a None
    value removes the variable."""
    env = {k: v for k, v in os.environ.items() if not _is_server_variable(k)}
    env.update(
        {
            "ORCHESTRATOR_HOST": "127.0.0.1",
            "ORCHESTRATOR_PORT": "0",
            "DATABASE_URL": database_url,
            "JWT_SECRET": JWT_SECRET,
            "ORCHESTRATOR_ADMIN_USERNAME": ADMIN_USERNAME,
            "ORCHESTRATOR_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
        }
    )
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class ServerExited(AssertionError):
    """The process ended before the awaited log line appeared."""


class ServerProcess:
    def __init__(
        self,
        database_url: str,
        env: Mapping[str, str | None] | None = None,
        *,
        args: tuple[str, ...] = ("serve",),
        cwd: str | Path | None = None,
    ) -> None:
        self.env = server_env(database_url, env)
        self.args = args
        self.cwd = cwd
        self.port: int | None = None
        self.address: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: list[str] = []  # stderr, where the server logs
        self._stdout: list[str] = []
        self._readers: list[threading.Thread] = []
        self._eof = 0
        self._changed = threading.Condition()

    # -- starting -------------------------------------------------------------

    def launch(self) -> ServerProcess:
        """Starts the process without waiting for anything."""
        if self._process is not None:
            raise RuntimeError("already launched")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        for pipe, lines in (
            (self._process.stderr, self._lines),
            (self._process.stdout, self._stdout),
        ):
            reader = threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def start(self, timeout: float = 30) -> ServerProcess:
        """Launches the server and waits until it listens (setting port and
        address) and reports SERVING, so no check races the start-up."""
        deadline = time.monotonic() + timeout
        self.launch()
        match = self.wait_for_log(LISTENING, timeout)
        self.port = int(match.group(1))
        self.address = f"127.0.0.1:{self.port}"
        self.wait_for_log(READY, max(0.0, deadline - time.monotonic()))
        return self

    def _read(self, pipe: IO[bytes], lines: list[str]) -> None:
        for raw in iter(pipe.readline, b""):
            with self._changed:
                lines.append(raw.decode(errors="replace").rstrip("\r\n"))
                self._changed.notify_all()
        pipe.close()
        with self._changed:
            self._eof += 1
            self._changed.notify_all()

    # -- watching -------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._require().pid

    @property
    def returncode(self) -> int | None:
        return self._require().poll()

    @property
    def lines(self) -> list[str]:
        """stderr so far, one entry per line."""
        with self._changed:
            return list(self._lines)

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self._stdout)

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10) -> re.Match[str]:
        """The first match of `pattern` in a stderr line, waiting for it up to
        `timeout` seconds. ServerExited if the process ends first,
        TimeoutError if the time runs out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                for line in self._lines[checked:]:
                    if match := regex.search(line):
                        return match
                checked = len(self._lines)
                if self._eof == 2 and self._require().poll() is not None:
                    raise ServerExited(
                        f"server exited with {self._process and self._process.returncode} "
                        f"before logging {regex.pattern!r}; its log:\n{self._text()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no {regex.pattern!r} in the server log after {timeout}s:\n{self._text()}"
                    )
                # The pipes close before the process is reaped: poll for that last step.
                self._changed.wait(min(remaining, 0.05) if self._eof == 2 else remaining)

    def _text(self) -> str:
        return "\n".join(self._lines)

    # -- stopping -------------------------------------------------------------

    def terminate(self) -> None:
        """SIGTERM: a graceful shutdown."""
        self._signal(signal.SIGTERM)

    def interrupt(self) -> None:
        """SIGINT, as Ctrl+C sends."""
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> None:
        process = self._require()
        if process.poll() is None:  # never signal a pid that may have been reused
            process.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        """The exit code, once the process has ended and its output is read.
        subprocess.TimeoutExpired if it is still running after `timeout`."""
        code = self._require().wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self, timeout: float = 15) -> int | None:
        """Ends the process whatever state it is in; the exit code, or None if
        it was never launched."""
        if self._process is None:
            return None
        self.terminate()
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.wait(timeout)

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the server was not launched")
        return self._process

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
