"""Durations and times as people type them: `30s`, `5m`, `1h30m`, `2d`;
ISO 8601 times, local unless they say otherwise. Each problem is a
UsageError (exit 2) that names the option."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from orchestrator.cli.exits import UsageError

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.ASCII)
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def duration(text: str, option: str) -> timedelta:
    """`1h30m`, `90s`, `2d`, or a bare number of seconds."""
    cleaned = text.strip().lower()
    if cleaned.isascii() and cleaned.isdigit():
        cleaned += "s"
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        raise UsageError(f"{option} {text!r}: expected a duration such as 30s, 5m, 1h30m or 2d")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise UsageError(f"{option} {text!r}: too long") from None


def spoken(seconds: int) -> str:
    """Seconds as `duration` reads them back: 5400 → `1h30m`, 0 → `0s`."""
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def moment(text: str, option: str) -> datetime:
    """An ISO 8601 time (`2026-12-01T09:30:00Z`, `2026-12-01 09:30`,
    `2026-12-01`); without an offset it is local time."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected an ISO 8601 time such as 2026-12-01T09:30:00Z "
            "(without an offset: local time)"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()
