"""What the commands print: one JSON document for scripts, Rich tables and
summaries for people. Values from the server are always passed as Text, never
as markup, so a task titled "[red]x" prints as it is."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

from orchestrator.client import to_jsonable

# Piped output is not cut to 80 columns: ids must survive a copy and paste.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False)

STATUS_STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "CANCELLED": "yellow",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "QUEUED": "blue",
    "PENDING": "dim",
}


T = TypeVar("T")


async def first(items: AsyncIterator[T], limit: int) -> list[T]:
    """The first `limit` items of a listing that pages on as it is read."""
    found: list[T] = []
    async for item in items:
        found.append(item)
        if len(found) >= limit:
            break
    return found


def json_document(value: Any) -> None:
    """The one JSON document of a command run with -o json."""
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def pretty_json(value: Any) -> str:
    return json.dumps(to_jsonable(value), indent=2, ensure_ascii=False)


def status(value: object) -> Text:
    name = str(getattr(value, "value", value) or "")
    return Text(name, style=STATUS_STYLES.get(name, ""))


def when(value: datetime | None) -> str:
    """A time as people read it: local, to the second."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def took(start: datetime | None, end: datetime | None) -> str:
    if start is None:
        return ""
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:.2f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def table(columns: Sequence[str], rows: Iterable[Sequence[Text | str]], empty: str) -> None:
    """A table on stdout; `empty` (on stderr) when there are no rows."""
    grid = Table(*columns, box=None, header_style="bold", pad_edge=False)
    count = 0
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else Text(cell) for cell in row))
        count += 1
    if count:
        out.print(grid)
    else:
        err.print(Text(empty, style="dim"))


def fields(pairs: Iterable[tuple[str, Text | str]]) -> None:
    """A "name  value" list on stdout, for one object."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in pairs:
        if value != "":
            grid.add_row(name, value if isinstance(value, Text) else Text(value))
    out.print(grid)


def note(message: str, style: str = "") -> None:
    """A remark for people, on stderr so it never mixes with results; one
    line, whatever the width (a command to copy must not be cut in two)."""
    err.print(Text(message, style=style), soft_wrap=True)
