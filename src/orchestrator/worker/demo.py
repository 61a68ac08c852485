"""The demo task types (DESIGN §4b), for trying things out and for tests:
`echo`, `sleep` and `fail`."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from orchestrator.worker._context import TaskContext
from orchestrator.worker._errors import PermanentError
from orchestrator.worker._worker import DEFAULT_SLOTS, Worker

DEMO_TASK_TYPES = ("echo", "fail", "sleep")
# Shorter sleeps finish before a progress report would tell anyone much.
PROGRESS_FROM_SECONDS = 1.0


class DemoFailure(Exception):
    """The `fail` task type failing, as asked."""


async def echo(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    """Output = input."""
    return input


async def sleep(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    """Sleep `input.seconds` (default 1), reporting progress every 10%."""
    seconds = input.get("seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise PermanentError(f"seconds must be a number, got {seconds!r}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise PermanentError(f"seconds must be zero or more, got {seconds}")
    if seconds < PROGRESS_FROM_SECONDS:
        await asyncio.sleep(seconds)
        return {"slept": seconds}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    for tenth in range(1, 11):
        # Against the deadline, not step by step, so the steps' overheads do not add up.
        await asyncio.sleep(max(0.0, deadline - seconds * (10 - tenth) / 10 - loop.time()))
        if tenth < 10:
            ctx.progress(tenth * 10, f"slept {seconds * tenth / 10:g}s of {seconds:g}s")
    return {"slept": seconds}


async def fail(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    """Fail with `input.message`; permanently if `input.permanent` is true."""
    message = str(input.get("message") or "failed on purpose")
    if input.get("permanent") is True:
        raise PermanentError(message)
    raise DemoFailure(message)


def demo_worker(name: str | None = None, slots: int = DEFAULT_SLOTS) -> Worker:
    worker = Worker(name=name, slots=slots)
    worker.register("echo", echo)
    worker.register("sleep", sleep)
    worker.register("fail", fail)
    return worker
