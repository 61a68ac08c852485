"""Logging set-up: one line per record, as text for people or JSON for
collectors. Fields passed through `extra=` appear in both, and so do the
correlation ids: `trace_id`/`span_id` of the active span, and the ids
bound around the work (`bound`: a worker's `worker_id`, a task's `task_id`)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from orchestrator import tracing

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


_bound: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "log_ids", default=()
)


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Every record logged within (in this task, and in tasks it starts)
    carries these ids, unless the call's `extra=` gives its own."""
    token = _bound.set((*_bound.get(), *((k, v) for k, v in ids.items() if v)))
    try:
        yield
    finally:
        _bound.reset(token)


class Correlation(logging.Filter):
    """Puts the correlation ids on each record. A filter on the handler,
    so records of every logger get them, the caller's own `extra=` first."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Innermost binding first: the first value set for a key stays.
        for key, value in (*reversed(_bound.get()), *tracing.ids().items()):
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")
        fields = " ".join(f"{k}={v}" for k, v in extras.items())
        return f"{head} {fields}{sep}{tail}"


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Correlation())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Each statement at INFO would drown the lifecycle lines.
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
