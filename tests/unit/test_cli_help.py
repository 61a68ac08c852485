"""`--help` of every command reads without internal type labels: no
`TYPE <str>`, `--help <bool>`, `<int range>` or `<table|json>`, and no
`{TYPE}` in the usage line."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import typer.main
from typer.testing import CliRunner

from orchestrator.cli.main import app

TYPE_LABEL = re.compile(r"<[^<>\s][^<>\n]*>")


def _paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _paths(sub, (*path, name))


COMMANDS = list(_paths(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    done = CliRunner().invoke(
        app, [*path, "--help"], prog_name="orchestrator", env={"COLUMNS": "200"}
    )
    assert done.exit_code == 0, done.output
    return done.output


def test_every_command_is_checked() -> None:
    assert ("task", "start") in COMMANDS and ("workflow", "runs") in COMMANDS
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "orchestrator")
def test_help_has_no_type_labels(path: tuple[str, ...]) -> None:
    text = _help(path)

    assert not TYPE_LABEL.findall(text), text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "[[" not in usage, usage
    assert "--help " in text and "Show this message and exit." in text


def test_arguments_and_options_name_what_they_take() -> None:
    run = _help(("task", "run"))
    assert "Usage: orchestrator task run [OPTIONS] TYPE " in run
    assert re.search(r"--input\s+-i\s+JSON\s", run), run
    assert re.search(r"--label\s+-l\s+KEY=VALUE\s", run), run
    assert re.search(r"--output\s+-o\s+table\|json\s", run), run
    assert re.search(r"--priority\s+N\s", run), run
    runs = _help(("workflow", "runs"))
    assert "Usage: orchestrator workflow runs [OPTIONS] [NAME_OR_ID]" in runs
