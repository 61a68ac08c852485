"""Input rules for tasks: every problem found at once, as field violations,
before anything is written."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from orchestrator.errors import FieldViolation, InvalidArgument
from orchestrator.model import Concurrency, JsonObject, NewTask, RateLimit

TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:/-]{0,127}$")
LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_LABELS = 64
MAX_LABEL_VALUE = 256
MAX_DEPTH = 32
MAX_ATTEMPTS = 100
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
MAX_IDEMPOTENCY_KEY = 128
MAX_KEY = 128
MAX_CONCURRENCY_LIMIT = 10_000
MAX_RATE_LIMIT = 1_000_000
PERIODS = frozenset({1, 60, 3600})


def depth(value: Any) -> int:
    """Nesting depth of a JSON value: a scalar is 0, `{}` is 1."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            deepest = max(deepest, level)
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def payload_problem(value: JsonObject, max_bytes: int) -> str | None:
    """Why a JSON object may not be stored as an input or output, or None."""
    if depth(value) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except ValueError:
        return "holds NaN or Infinity, which JSON cannot"
    if size > max_bytes:
        return f"is {size} bytes, over the limit of {max_bytes}"
    return None


def type_problem(name: str) -> str | None:
    if not name:
        return "must not be empty"
    if not TYPE_NAME.match(name):
        return "must start with a letter and use at most 128 letters, digits or _.:/-"
    return None


def _labels_problem(labels: dict[str, str]) -> str | None:
    if len(labels) > MAX_LABELS:
        return f"at most {MAX_LABELS} labels"
    for key, value in labels.items():
        if not LABEL_KEY.match(key):
            return f"key {key[:70]!r} must be 1-63 letters, digits or _.:/-"
        if len(value) > MAX_LABEL_VALUE:
            return f"value of {key!r} must be at most {MAX_LABEL_VALUE} characters"
    return None


def _at_most(limit: int) -> Callable[[str | None], str | None]:
    return lambda text: f"must be at most {limit} characters" if len(text or "") > limit else None


def _within(low: int, high: int) -> Callable[[int], str | None]:
    return lambda number: None if low <= number <= high else f"must be in [{low}, {high}]"


def field_problems(values: dict[str, Any], max_payload_bytes: int, prefix: str = "") -> None:
    """Check each given task field by its rule; raise all problems at once."""
    rules: dict[str, Callable[[Any], str | None]] = {
        "type": type_problem,
        "title": _at_most(MAX_TITLE),
        "description": _at_most(MAX_DESCRIPTION),
        "input": lambda value: payload_problem(value, max_payload_bytes),
        "labels": _labels_problem,
        "priority": _within(MIN_PRIORITY, MAX_PRIORITY),
        "max_attempts": _within(1, MAX_ATTEMPTS),
        "timeout_seconds": _within(0, MAX_TIMEOUT_SECONDS),
        "idempotency_key": _at_most(MAX_IDEMPOTENCY_KEY),
    }
    problems = [
        FieldViolation(prefix + name, problem)
        for name, value in values.items()
        if name in rules and (problem := rules[name](value))
    ]
    if problems:
        raise InvalidArgument(violations=problems)


def concurrency_problems(concurrency: Concurrency | None, prefix: str = "") -> list[FieldViolation]:
    """A key needs a limit of its own (DESIGN §4), and a limit or a
    strategy a key."""
    if concurrency is None:
        return []
    if not concurrency.key:
        given = "concurrency_limit" if concurrency.limit else "concurrency_strategy"
        return [FieldViolation(prefix + given, "needs a concurrency_key")]
    problems = []
    if len(concurrency.key) > MAX_KEY:
        problems.append(FieldViolation(prefix + "concurrency_key", f"at most {MAX_KEY} characters"))
    if not 1 <= concurrency.limit <= MAX_CONCURRENCY_LIMIT:
        problems.append(
            FieldViolation(
                prefix + "concurrency_limit",
                f"must be in [1, {MAX_CONCURRENCY_LIMIT}] with a concurrency key",
            )
        )
    return problems


def rate_limit_problems(rate: RateLimit | None, prefix: str = "") -> list[FieldViolation]:
    if rate is None:
        return []
    if not rate.bucket:
        given = "rate_limit" if rate.limit else "rate_limit_period"
        return [FieldViolation(prefix + given, "needs a rate_limit_bucket")]
    problems = []
    if len(rate.bucket) > MAX_KEY:
        problems.append(
            FieldViolation(prefix + "rate_limit_bucket", f"at most {MAX_KEY} characters")
        )
    if not 1 <= rate.limit <= MAX_RATE_LIMIT:
        problems.append(
            FieldViolation(prefix + "rate_limit", f"must be in [1, {MAX_RATE_LIMIT}] with a bucket")
        )
    if rate.period_seconds not in PERIODS:
        problems.append(
            FieldViolation(prefix + "rate_limit_period", "name one: second, minute or hour")
        )
    return problems


def check_new_task(task: NewTask, max_payload_bytes: int) -> None:
    values = {
        f.name: getattr(task, f.name)
        for f in dataclasses.fields(task)
        if f.name not in ("concurrency", "rate_limit")
    }
    problems = concurrency_problems(task.concurrency) + rate_limit_problems(task.rate_limit)
    try:
        field_problems(values, max_payload_bytes)
    except InvalidArgument as invalid:
        problems = [*invalid.violations, *problems]
    if problems:
        raise InvalidArgument(violations=problems)
