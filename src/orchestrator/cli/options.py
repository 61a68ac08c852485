"""Options every client command takes, declared once.

`-o/--output` belongs to each command (`orchestrator task run echo -o json`),
not to `orchestrator` itself, so it can go last on the line like any other
option.
"""

from __future__ import annotations

import enum
from typing import Annotated

import typer


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"


Url = Annotated[
    str | None,
    typer.Option(
        "--url",
        metavar="HOST:PORT",
        help="Server address (default: $ORCHESTRATOR_URL, else the logged-in server, "
        "else localhost:50051).",
        show_default=False,
    ),
]
Output = Annotated[
    OutputFormat,
    typer.Option(
        "-o",
        "--output",
        help="table: for people (live views on stderr); json: one JSON document on stdout.",
        case_sensitive=False,
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from stdin instead of a prompt."),
]
Input = Annotated[
    str,
    typer.Option(
        "--input",
        "-i",
        metavar="JSON",
        # Its default, an empty object, needs no showing.
        show_default=False,
        help="A JSON object; @FILE reads it from a file, - from stdin.",
    ),
]
Limit = Annotated[
    int, typer.Option("--limit", "-n", min=1, help="Show at most this many (newest first).")
]
