"""The README's walkthrough as data, the rules that compare its sample
outputs with a real run's, and a terminal to replay its commands in.

The walkthrough is the README section from `## Walkthrough` to the next
`## ` heading. In its ```console blocks a line `$ COMMAND` is a command and
the lines below it, up to the next `$ `, are what it printed. A line `...`
stands for any number of lines. Any other fenced block whose paragraph ends
with "as `NAME`:" is the file NAME.

A command's output is what a terminal shows once it has ended: a live
display counts as the last frame it leaves on the screen.

Run-dependent values are masked before lines are compared: timestamps,
durations (`11ms`, `2.01s`), elapsed times (`0:00:02`). Ids (UUIDs and their
8-character prefixes), addresses (`127.0.0.1:PORT`) and API token secrets
are masked too, but bound: the first time a README value meets this run's
value they stand for each other, one to one, for the rest of the run. So a
README id must be the same object wherever it appears (a runs list shows
the run just shown), and a command that quotes one gets this run's value.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HEADING = "## Walkthrough"
ELISION = "..."
_FILE = re.compile(r"as `([^`/]+)`:$")

# In priority order: a timestamp holds an elapsed-looking time, a UUID an 8-hex word.
_KINDS = {
    "id": r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
    "secret": r"\borch_[A-Za-z0-9_-]{20,}",
    "address": r"\b127\.0\.0\.1:\d+\b",
    "time": r"\b\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{3})?\b",
    "elapsed": r"\b\d+:\d\d:\d\d\b",
    "duration": r"\b\d+(?:\.\d+)?(?:ms|s)\b",
    "short": r"\b[0-9a-f]{8}\b",
}
_VALUE = re.compile("|".join(f"(?P<{kind}>{pattern})" for kind, pattern in _KINDS.items()))
BOUND = frozenset({"id", "secret", "address", "short"})


# -- the README ------------------------------------------------------------------


@dataclass
class Command:
    text: str
    expected: list[str]
    line: int  # index of its `$ ` line in Walkthrough.lines


@dataclass
class Walkthrough:
    lines: list[str]  # the section, heading included
    start: int  # index of its heading in the README's lines
    commands: list[Command] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def _bounds(lines: Sequence[str]) -> tuple[int, int]:
    start = list(lines).index(HEADING)
    fenced = False
    for index in range(start + 1, len(lines)):
        if lines[index].startswith("```"):
            fenced = not fenced
        elif not fenced and lines[index].startswith("## "):
            return start, index
    return start, len(lines)


def parse(readme: str) -> Walkthrough:
    lines = readme.splitlines()
    start, end = _bounds(lines)
    walkthrough = Walkthrough(lines[start:end], start)
    section = walkthrough.lines
    prose: list[str] = []  # the last paragraph before a block
    ended = False
    index = 0
    while index < len(section):
        line = section[index]
        if not line.startswith("```"):
            if line.strip():
                prose = [line] if ended else [*prose, line]
            ended = not line.strip()
            index += 1
            continue
        closing = section.index("```", index + 1)
        body = section[index + 1 : closing]
        if line == "```console":
            walkthrough.commands += _commands(body, index + 1)
        elif match := _FILE.search(" ".join(prose).strip()):
            walkthrough.files[match.group(1)] = "\n".join(body) + "\n"
        prose = []
        index = closing + 1
    return walkthrough


def _commands(body: list[str], first: int) -> list[Command]:
    commands: list[Command] = []
    for offset, line in enumerate(body):
        if line.startswith("$ "):
            commands.append(Command(line[2:], [], first + offset))
        elif commands:
            commands[-1].expected.append(line.rstrip())
        else:
            raise ValueError(f"walkthrough line {first + offset}: output before any `$ ` command")
    return commands


def replace_section(readme: str, old: Sequence[str], new: Sequence[str]) -> str:
    """`readme` with the walkthrough `new` in place of `old`; ValueError if
    the section is no longer `old` (someone edited it meanwhile)."""
    lines = readme.splitlines()
    start, end = _bounds(lines)
    if lines[start:end] != list(old):
        raise ValueError("the README's walkthrough changed during the run: nothing written")
    return "\n".join([*lines[:start], *new, *lines[end:]]) + "\n"


# -- comparing -------------------------------------------------------------------


def mask(line: str) -> str:
    return _VALUE.sub(lambda m: f"<{m.lastgroup}>", line.rstrip())


def values(line: str) -> list[str]:
    """The values of a line that are bound, in order."""
    return [m.group() for m in _VALUE.finditer(line) if m.lastgroup in BOUND]


def pattern(line: str) -> re.Pattern[str]:
    """A regex for the lines that `line` matches once masked."""
    line = line.rstrip()
    parts: list[str] = []
    position = 0
    for match in _VALUE.finditer(line):
        parts += [re.escape(line[position : match.start()]), f"(?:{_KINDS[match.lastgroup or '']})"]
        position = match.end()
    return re.compile(f"^{''.join(parts)}{re.escape(line[position:])}\\s*$")


def align(
    expected: Sequence[str], actual: Sequence[str], open_end: bool = False
) -> list[tuple[int, int]] | None:
    """Pairs (expected index, actual index) of the lines that match once
    masked, when all of `expected` matches `actual` (`...` matching any lines;
    with `open_end`, any lines may follow); None otherwise."""
    wanted = [mask(line) for line in expected]
    seen = [mask(line) for line in actual]

    @functools.cache
    def match(i: int, j: int) -> tuple[tuple[int, int], ...] | None:
        if i == len(wanted):
            return () if open_end or j == len(seen) else None
        if wanted[i] == ELISION:
            for k in range(j, len(seen) + 1):
                if (rest := match(i + 1, k)) is not None:
                    return rest
            return None
        if j < len(seen) and wanted[i] == seen[j] and (rest := match(i + 1, j + 1)) is not None:
            return ((i, j), *rest)
        return None

    found = match(0, 0)
    return None if found is None else list(found)


class Bindings:
    """README values and this run's, one to one."""

    def __init__(self) -> None:
        self.actual: dict[str, str] = {}
        self.readme: dict[str, str] = {}

    def bind(self, readme: str, actual: str) -> str | None:
        """None when `readme` may stand for `actual`; otherwise why not."""
        pairs = [(readme, actual)]
        if re.fullmatch(_KINDS["id"], readme) and re.fullmatch(_KINDS["id"], actual):
            pairs.append((readme[:8], actual[:8]))  # the short form names the same object
        for ours, theirs in pairs:
            if self.actual.get(ours, theirs) != theirs:
                return f"{ours} stood for {self.actual[ours]} before, and for {theirs} here"
            if self.readme.get(theirs, ours) != ours:
                return f"{theirs} was shown as {self.readme[theirs]} before, and as {ours} here"
        for ours, theirs in pairs:
            self.actual[ours], self.readme[theirs] = theirs, ours
        return None

    def to_actual(self, text: str, kinds: frozenset[str] = BOUND) -> str:
        """`text` with the bound README values of `kinds` replaced by this run's."""
        return _VALUE.sub(
            lambda m: self.actual.get(m.group(), m.group()) if m.lastgroup in kinds else m.group(),
            text,
        )

    def to_readme(self, text: str, kinds: frozenset[str]) -> str:
        """`text` with this run's values of `kinds` replaced by the README's."""
        return _VALUE.sub(
            lambda m: self.readme.get(m.group(), m.group()) if m.lastgroup in kinds else m.group(),
            text,
        )


# -- a terminal ------------------------------------------------------------------

_CONTROL = re.compile(
    r"\x1b\[([0-9;?]*)([A-Za-z])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (links, titles)
    r"|[\r\n\b\x07]"
)


class Screen:
    """What a terminal shows after some output: the cursor moves, line
    erasures and carriage returns a live display relies on, colours dropped.
    Lines do not wrap, as a terminal's copy joins its wrapped lines."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = 0
        self.column = 0

    def feed(self, text: str) -> None:
        position = 0
        for match in _CONTROL.finditer(text):
            self._write(text[position : match.start()])
            self._control(match)
            position = match.end()
        self._write(text[position:])

    def lines(self) -> list[str]:
        shown = ["".join(row).rstrip() for row in self.rows]
        while shown and not shown[-1]:
            shown.pop()
        return shown

    def _write(self, text: str) -> None:
        row = self.rows[self.row]
        row += [" "] * (self.column - len(row))
        row[self.column : self.column + len(text)] = list(text)
        self.column += len(text)

    def _down(self, count: int) -> None:
        self.row += count
        self.rows += [[] for _ in range(self.row + 1 - len(self.rows))]

    def _control(self, match: re.Match[str]) -> None:
        token = match.group()
        if token == "\r":
            self.column = 0
        elif token == "\n":
            self._down(1)
        elif token == "\b":
            self.column = max(0, self.column - 1)
        elif match.group(2):
            self._csi(match.group(1), match.group(2))

    def _csi(self, parameters: str, final: str) -> None:
        count = int(parameters) if parameters.isdigit() else 1
        row = self.rows[self.row]
        if final in "mhl":  # colours and modes (the cursor shown or hidden)
            pass
        elif final == "A":
            self.row = max(0, self.row - count)
        elif final == "B":
            self._down(count)
        elif final == "C":
            self.column += count
        elif final == "D":
            self.column = max(0, self.column - count)
        elif final == "G":
            self.column = count - 1
        elif final == "K" and parameters in ("", "0"):
            del row[self.column :]
        elif final == "K" and parameters == "1":
            row[: self.column + 1] = [" "] * min(len(row), self.column + 1)
        elif final == "K" and parameters == "2":
            row.clear()
        else:
            raise ValueError(f"unexpected terminal control ESC[{parameters}{final}")


@dataclass(frozen=True)
class Finished:
    code: int
    lines: list[str]  # the screen


def run_in_terminal(
    script: str,
    env: Mapping[str, str],
    cwd: Path,
    answers: Mapping[str, str],
    timeout: float,
    size: tuple[int, int] = (40, 120),
) -> Finished:
    """`bash -c SCRIPT` on a pseudo-terminal of `size` (rows, columns), as a
    person at a terminal runs it: stdin, stdout and stderr on one screen.
    A prompt in `answers` that ends the output so far is answered (as a
    person types a password: the terminal does not echo it).
    TimeoutError, its process group killed, if it outlives `timeout`."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    try:
        process = subprocess.Popen(
            ["bash", "-c", script],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,  # its own group, so a timeout ends all it started
        )
    finally:
        os.close(terminal)
    try:
        output = _read(controller, answers, time.monotonic() + timeout)
        if output is None:
            raise TimeoutError(f"still running after {timeout}s")
        code = process.wait(timeout)
    finally:
        os.close(controller)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    screen = Screen()
    screen.feed(output.decode(errors="replace"))
    return Finished(code, screen.lines())


def _read(controller: int, answers: Mapping[str, str], deadline: float) -> bytes | None:
    """All a terminal's output until every holder has closed it; None if
    the deadline comes first."""
    output = b""
    answered = 0
    while (remaining := deadline - time.monotonic()) > 0:
        if not select.select([controller], [], [], remaining)[0]:
            continue
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the last holder has closed it
            return output
        if not chunk:
            return output
        output += chunk
        for prompt, answer in answers.items():
            if len(output) > answered and output.endswith(prompt.encode()):
                os.write(controller, answer.encode())
                answered = len(output)
    return None
