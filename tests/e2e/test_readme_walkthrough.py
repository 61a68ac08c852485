"""The README's walkthrough, true to the letter: every command of its console
blocks runs in order, as a person runs it, against `orchestrator dev`, and
what it prints is compared with the README's sample output (the rules for
what is masked are in tests/support/walkthrough.py).

`make dev` is `orchestrator dev` on port 0 with a fresh SQLite file. A
command that keeps running (`make dev`, `orchestrator worker`) starts in
the background from a fresh environment, as in a terminal of its own, and
its log begins with the README's lines. Every other command runs in `bash`
on a pseudo-terminal of 120 columns, in a directory that holds the README's
files and a `.venv` link to the venv running the tests; exported variables
and `$?` carry from one command to the next, as in one shell, and HOME is
empty. `orchestrator login`'s password prompt is answered with the dev
admin's password.

When outputs change on purpose, `README_WALKTHROUGH_WRITE=1` rewrites the
walkthrough's outputs from this run, all of them, and still reports what
differed. Ports stay those of `make dev`; ids become this run's throughout
the section, prose included; an output with a `...` line is left as it is.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.cli.dev import DEV_ADMIN_PASSWORD
from tests.e2e.conftest import REPO
from tests.support.server import ServerExited, ServerProcess
from tests.support.walkthrough import (
    BOUND,
    ELISION,
    Bindings,
    Command,
    Walkthrough,
    align,
    mask,
    parse,
    pattern,
    replace_section,
    run_in_terminal,
    values,
)

pytestmark = pytest.mark.any_database

README = REPO / "README.md"
WRITE = os.environ.get("README_WALKTHROUGH_WRITE") == "1"
VENV = Path(sys.prefix)
# Commands that run until stopped, as `NAME=value ... PROGRAM ARGS` at most.
LONG_RUNNING = re.compile(r"^(?:\w+=\S*\s+)*(?:make dev|\S*orchestrator worker)\b")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
# The longest command waits two seconds for its task.
COMMAND_TIMEOUT = 30.0
# A loaded CI machine starts a server slowly; a healthy one in about two seconds.
START_TIMEOUT = 30.0
# Variables that would change what the commands print, never inherited.
_OURS = ("ORCHESTRATOR_", "DATABASE_URL", "JWT_")
_DISPLAY = frozenset({"COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "LC_ALL"})
# What each `bash -c` sets for itself: not carried to the next command.
_SHELL_OWN = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})
# What `make dev` and a worker find that a test server's environment would add.
_NOT_SET = dict.fromkeys(
    (
        "JWT_SECRET",
        "ORCHESTRATOR_ADMIN_USERNAME",
        "ORCHESTRATOR_ADMIN_PASSWORD",
        "ORCHESTRATOR_LOG_LEVEL",
    )
)


def fresh_terminal(home: Path) -> dict[str, str]:
    """A new terminal's environment: nothing of ours, the venv not on PATH."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(_OURS) and name not in _DISPLAY
    }
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in path if Path(p) != VENV / "bin")
    env.update(HOME=str(home), TERM="xterm-256color", LANG="C.UTF-8")
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclass
class Replay:
    """The walkthrough's commands run one after another, and how each went."""

    walkthrough: Walkthrough
    work: Path
    home: Path
    database_url: str
    env: dict[str, str] = field(init=False)  # the shell's, carried from command to command
    code: int = 0  # the last command's exit code: `$?`
    bindings: Bindings = field(default_factory=Bindings)
    differences: list[str] = field(default_factory=list)
    outputs: dict[int, list[str]] = field(default_factory=dict)  # by README line: the screen
    background: list[ServerProcess] = field(default_factory=list)
    stuck: bool = False  # a command hung or a server never came up: the rest would too

    def __post_init__(self) -> None:
        self.env = fresh_terminal(self.home)

    def run(self, command: Command) -> None:
        text = self.bindings.to_actual(command.text)
        if LONG_RUNNING.match(text):
            self._start(command, text)
        else:
            self._run(command, text)

    def _run(self, command: Command, text: str) -> None:
        carried = self.work.parent / "environment"
        script = (
            f"(exit {self.code})\n{text}\nstatus=$?\n"
            f"env -0 > {shlex.quote(str(carried))}\nexit $status\n"
        )
        answers = {"Password: ": f"{DEV_ADMIN_PASSWORD}\n"}
        try:
            finished = run_in_terminal(script, self.env, self.work, answers, COMMAND_TIMEOUT)
        except TimeoutError as exc:
            self._differ(command, [str(exc)])
            self.stuck = True
            return
        self.code = finished.code
        pairs = (entry.split("=", 1) for entry in carried.read_text().split("\0") if "=" in entry)
        self.env = {name: value for name, value in pairs if name not in _SHELL_OWN}
        self._compare(command, finished.lines, open_end=False)

    def _start(self, command: Command, text: str) -> None:
        words = shlex.split(text)
        assigned = list(itertools.takewhile(ASSIGNMENT.match, words))
        program = words[len(assigned) :]
        env: dict[str, str | None] = {"HOME": str(self.home), **_NOT_SET}
        if program == ["make", "dev"]:
            env["ORCHESTRATOR_HTTP_PORT"] = "0"
            process = ServerProcess(self.database_url, env, args=("dev",), cwd=self.work)
        else:  # a worker
            for name in ("DATABASE_URL", "ORCHESTRATOR_HOST", "ORCHESTRATOR_PORT"):
                env[name] = None
            env.update(word.partition("=")[::2] for word in assigned)
            process = ServerProcess("unused", env, args=tuple(program[1:]), cwd=self.work)
        self.background.append(process)
        last = next(line for line in reversed(command.expected) if line != ELISION)
        try:
            process.launch().wait_for_log(pattern(last), START_TIMEOUT)
        except (TimeoutError, ServerExited) as exc:
            self._differ(command, [str(exc)])
            self.stuck = True
            return
        self._compare(command, process.lines, open_end=True)

    def _compare(self, command: Command, actual: list[str], open_end: bool) -> None:
        pairs = align(command.expected, actual, open_end)
        if not open_end:
            self.outputs[command.line] = actual
        elif pairs:  # a log that goes on: the lines the README shows
            self.outputs[command.line] = actual[: pairs[-1][1] + 1]
        if pairs is None:
            expected = [mask(line) for line in command.expected]
            seen = [mask(line) for line in actual]
            diff = difflib.unified_diff(expected, seen, "README", "this run", lineterm="")
            self._differ(command, list(diff))
            # Lines that still agree bind their values, so later commands find this run's.
            blocks = difflib.SequenceMatcher(None, expected, seen, autojunk=False)
            pairs = [
                (block.a + k, block.b + k)
                for block in blocks.get_matching_blocks()
                for k in range(block.size)
            ]
        for i, j in pairs:
            for ours, theirs in zip(values(command.expected[i]), values(actual[j]), strict=True):
                if problem := self.bindings.bind(ours, theirs):
                    self._differ(command, [f"{command.expected[i]}\n  {problem}"])

    def _differ(self, command: Command, details: list[str]) -> None:
        number = self.walkthrough.start + command.line + 1
        self.differences.append("\n".join([f"README.md:{number}: $ {command.text}", *details]))

    def stop(self) -> None:
        for process in reversed(self.background):
            process.stop()
            print(f"--- log of {' '.join(process.args)}:", process.log, sep="\n")

    def rewritten(self) -> list[str]:
        """The walkthrough with this run's outputs, for README_WALKTHROUGH_WRITE."""
        lines = list(self.walkthrough.lines)
        for command in reversed(self.walkthrough.commands):  # last first: indices hold
            shown = self.outputs.get(command.line)
            if shown is not None and ELISION not in command.expected:
                end = command.line + 1 + len(command.expected)
                readme = [self.bindings.to_readme(line, frozenset({"address"})) for line in shown]
                lines[command.line + 1 : end] = readme
        return [self.bindings.to_actual(line, BOUND - {"address"}) for line in lines]


def test_every_walkthrough_command_prints_what_the_readme_says(
    database_url: str, tmp_path: Path
) -> None:
    walkthrough = parse(README.read_text())
    assert walkthrough.commands, "no console block in the README's walkthrough"
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    (work / ".venv").symlink_to(VENV)
    for name, text in walkthrough.files.items():
        (work / name).write_text(text)
    replay = Replay(walkthrough, work, home, database_url)
    try:
        for command in walkthrough.commands:
            replay.run(command)
            if replay.stuck:
                break
    finally:
        replay.stop()
    if WRITE and not replay.stuck:
        # Read again just before writing: only this section changes, and only if untouched.
        README.write_text(
            replace_section(README.read_text(), walkthrough.lines, replay.rewritten())
        )
    if replay.differences:
        report = "\n\n".join(replay.differences)
        pytest.fail(f"the README's walkthrough differs from a real run:\n{report}", pytrace=False)
