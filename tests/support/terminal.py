"""A command on a pseudo-terminal, and the screen it leaves: for testing what
a person sees of a live view (lines redrawn in place, a view taken off the
screen), which a pipe never shows.

    with Terminal(["orchestrator", "task", "run", ...], env) as term:
        term.wait_for("started")
        term.interrupt()                 # Ctrl+C
        assert term.wait(30) == 130
    assert "━" not in "\\n".join(term.screen())

Only the pid this object started is ever signalled.
"""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

COLUMNS = 100
# CSI sequences: cursor moves, erases, colours, cursor visibility.
_CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Terminal:
    def __init__(self, args: Sequence[str], env: Mapping[str, str]) -> None:
        leader, follower = pty.openpty()
        environment = {**env, "TERM": "xterm", "COLUMNS": str(COLUMNS), "LINES": "40"}
        self._process = subprocess.Popen(
            list(args), stdin=follower, stdout=follower, stderr=follower, env=environment
        )
        os.close(follower)
        self._leader = leader
        self._output: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._leader, 65536)
            except OSError:  # the other side closed: the process has ended
                data = b""
            with self._changed:
                if not data:
                    self._changed.notify_all()
                    return
                self._output.append(data.decode(errors="replace"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        """Everything written so far, control sequences included."""
        with self._changed:
            return "".join(self._output)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first match of `pattern` in the output (control sequences removed)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if match := regex.search(_CONTROL.sub("", "".join(self._output))):
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._reader.is_alive():
                    raise AssertionError(f"no {pattern!r} on the terminal:\n{self.output!r}")
                self._changed.wait(min(remaining, 0.5))

    def screen(self) -> list[str]:
        """The lines on the screen now, as a terminal would show them."""
        lines = [""]
        row = column = 0
        for part in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", self.output):
            if part == "\r":
                column = 0
            elif part == "\n":
                row += 1
                column = 0
                if row == len(lines):
                    lines.append("")
            elif match := _CONTROL.fullmatch(part):
                amount, command = match.group(1), match.group(2)
                if command == "A":
                    row = max(0, row - int(amount or 1))
                elif command == "K":
                    lines[row] = lines[row][:column] if amount in ("", "0") else ""
            elif part:
                line = lines[row].ljust(column)
                lines[row] = line[:column] + part + line[column + len(part) :]
                column += len(part)
        return [line.rstrip() for line in lines if line.strip()]

    def interrupt(self) -> None:
        """SIGINT, as Ctrl+C sends."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 30) -> int:
        code = self._process.wait(timeout)
        self._reader.join(timeout)
        return code

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(15)
        self._reader.join(15)
        os.close(self._leader)
