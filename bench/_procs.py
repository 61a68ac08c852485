"""Child processes of a benchmark: started with their output going to a log
file (so no pipe can fill up and stall them), and stopped by their own pid
only: SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# The server's own configuration: never inherited from the shell running the
# benchmark, so a stray variable cannot change what is measured.
_SERVER_VARIABLES = frozenset(
    {
        "DATABASE_URL",
        "JWT_SECRET",
        "JWT_EXPIRATION_SECONDS",
        "MAX_CONNECTIONS",
        "STREAM_BUFFER_SIZE",
    }
)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without any orchestrator setting, plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith("ORCHESTRATOR_") and name.upper() not in _SERVER_VARIABLES
    }
    env.update(extra)
    return env


def log(message: str) -> None:
    """Progress for people: stderr, never stdout (stdout carries the result)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc/PID/stat (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it do not.
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


class ChildExited(RuntimeError):
    """A child ended before it was asked to."""


class Child:
    """One process this benchmark started; `stop()` is always safe to call."""

    def __init__(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("wb") as sink:
            # Its own session: a Ctrl+C in the terminal reaches only the
            # benchmark, which then stops its children in order.
            self._process = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._process.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the process (all its threads) used so far;
        None where /proc is not available."""
        return process_cpu_seconds(self.pid)

    def alive(self) -> bool:
        return self._process.poll() is None

    def check_alive(self) -> None:
        code = self._process.poll()
        if code is not None:
            raise ChildExited(f"{self.name} (pid {self.pid}) exited with {code}:\n{self.tail()}")

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the child's log, polling the file."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if match := pattern.search(line):
                    return match
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name}: no {pattern.pattern!r} after {timeout}s:\n{self.tail()}"
                )
            time.sleep(0.05)

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def tail(self, count: int = 30) -> str:
        try:
            return "\n".join(self.lines()[-count:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. The exit code, or None
        when it had to be killed. Never signals a pid already reaped."""
        process = self._process
        if process.poll() is not None:
            return process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) ignored SIGTERM for {timeout}s: SIGKILL")
            process.kill()
            process.wait(10)
            return None
