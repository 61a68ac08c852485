"""The dashboard's templates: Jinja2 with autoescaping on for every file, so
titles, inputs, outputs, log lines and error messages from users are shown
as text, never as markup; and the few filters every page uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["pretty_json"] = pretty_json
    env.filters["duration"] = duration
    return env


def when(moment: datetime | None, empty: str = "—") -> Markup:
    """A time shown relative ("3 min ago"), exact on hover; app.js keeps the
    relative text current."""
    if moment is None:
        return Markup(escape(empty))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    iso = moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    exact = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, exact, relative(moment, datetime.now(UTC))
    )


def relative(moment: datetime, now: datetime) -> str:
    seconds = (now - moment).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    """A duration as people read it: 26 ms, 4.2 s, 37 s, 3 min 5 s, 2 min,
    2 h 10 min; "—" for none."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    hours, rest = divmod(round(seconds), 3600)
    minutes, whole = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {whole} s" if whole else f"{minutes} min"
    return f"{whole} s"


def pretty_json(value: Any) -> str:
    return json.dumps(_whole(value), indent=2, sort_keys=True, ensure_ascii=False)


def _whole(value: Any) -> Any:
    """Whole numbers as people wrote them (`6`, not `6.0`): the server keeps
    JSON's numbers as doubles, as the SDK and the CLI undo too."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value
