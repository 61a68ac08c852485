"""When and how fast a task may start, as options: `--at TIME` / `--in
DURATION`, `--concurrency-key K --concurrency-limit N`, `--rate-limit-bucket
B --rate-limit 5/s`. Each problem is a UsageError (exit 2) naming the option,
found before any call."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

import typer

from orchestrator.cli import render, times
from orchestrator.cli.exits import UsageError
from orchestrator.client import Task
from orchestrator.model import ConcurrencyStrategy

At = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Start no earlier than this ISO 8601 time, e.g. 2026-12-01T09:30:00Z "
        "(without an offset: local time).",
    ),
]
In = Annotated[
    str | None,
    typer.Option(
        "--in", metavar="DURATION", help="Start no earlier than this from now: 30s, 5m, 1h30m."
    ),
]


class Strategy(enum.StrEnum):
    QUEUE = "queue"
    CANCEL_NEWEST = "cancel-newest"
    CANCEL_OLDEST = "cancel-oldest"


ConcurrencyKey = Annotated[
    str,
    typer.Option(
        "--concurrency-key",
        metavar="KEY",
        help="At most --concurrency-limit of your tasks with this key run at once.",
    ),
]
ConcurrencyLimit = Annotated[
    int, typer.Option("--concurrency-limit", metavar="N", min=0, help="See --concurrency-key.")
]
ConcurrencyChoice = Annotated[
    Strategy,
    typer.Option(
        "--concurrency-strategy",
        case_sensitive=False,
        help="At the limit: queue (wait, keys take turns), cancel-newest (this task), "
        "cancel-oldest (the oldest running one).",
    ),
]
RateBucket = Annotated[
    str,
    typer.Option(
        "--rate-limit-bucket",
        metavar="BUCKET",
        help="Your tasks naming this bucket start at most --rate-limit often.",
    ),
]
Rate = Annotated[
    str | None,
    typer.Option("--rate-limit", metavar="N/PERIOD", help="5/s, 100/m or 1000/h."),
]

_RATE = re.compile(r"(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hr|hour)")
_PERIODS = {"s": "second", "m": "minute", "h": "hour"}


def start_time(at: str | None, after: str | None) -> dict[str, Any]:
    """`not_before` or `delay` for the SDK, from --at or --in (not both)."""
    if at is not None and after is not None:
        raise UsageError("give --at or --in, not both")
    if at is not None:
        return {"not_before": times.moment(at, "--at")}
    if after is not None:
        return {"delay": times.duration(after, "--in")}
    return {}


def limits(
    key: str, limit: int, strategy: Strategy, bucket: str, rate: str | None
) -> dict[str, Any]:
    """The SDK's concurrency and rate-limit keywords; each needs its pair."""
    found: dict[str, Any] = {}
    if key or limit:
        if not (key and limit):
            raise UsageError("--concurrency-key and --concurrency-limit go together")
        found |= {
            "concurrency_key": key,
            "concurrency_limit": limit,
            "concurrency_strategy": ConcurrencyStrategy[strategy.name],
        }
    if bucket or rate is not None:
        if not (bucket and rate is not None):
            raise UsageError("--rate-limit-bucket and --rate-limit go together")
        count, period = _rate(rate)
        found |= {"rate_limit_bucket": bucket, "rate_limit": count, "rate_limit_period": period}
    return found


def _rate(text: str) -> tuple[int, str]:
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) < 1:
        raise UsageError(f"--rate-limit {text!r}: expected N/s, N/m or N/h, such as 5/s")
    return int(match.group(1)), _PERIODS[match.group(2)[0]]


def described(task: Task) -> list[tuple[str, str]]:
    """`task get`'s lines about when and how fast the task may start, and
    why it waits; empty ones are not shown."""
    concurrency = rate = ""
    if task.concurrency_key:
        strategy = (task.concurrency_strategy or ConcurrencyStrategy.QUEUE).value.lower()
        concurrency = (
            f"{task.concurrency_key} (limit {task.concurrency_limit}, {strategy.replace('_', '-')})"
        )
    if task.rate_limit_bucket:
        rate = f"{task.rate_limit_bucket} ({task.rate_limit} per {task.rate_limit_period})"
    schedule = (
        f"{task.schedule_id} (for {render.when(task.scheduled_at)})" if task.schedule_id else ""
    )
    return [
        ("not before", render.when(task.not_before)),
        ("concurrency", concurrency),
        ("rate limit", rate),
        ("waiting", task.waiting),
        ("schedule", schedule),
    ]
