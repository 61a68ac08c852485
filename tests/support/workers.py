"""Task handlers for the end-to-end tests, served by

    python -m orchestrator worker tests.support.workers:worker

(run from the repository root, so that `tests` imports).

- `chatty`: appends `input.lines` log lines (default 1000), then succeeds
  with {"lines": n}. An async handler.
- `report`: a plain (non-async) handler, so it runs in a thread of its own:
  for each [percent, message] in `input.steps` it reports that progress and
  logs "step N: message", then succeeds saying which thread it ran in.
"""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.worker import TaskContext, Worker

CHATTY_LINES = 1000
# Long enough that the stream of LOG events is more than a few flow-control windows.
CHATTY_PADDING = "." * 80

worker = Worker(name="e2e-test-worker", slots=4)


def chatty_line(index: int) -> str:
    return f"line {index:04d} {CHATTY_PADDING}"


@worker.task("chatty")
async def chatty(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    lines = int(input.get("lines", CHATTY_LINES))
    for index in range(lines):
        ctx.log(chatty_line(index))
    return {"lines": lines}


@worker.task("report")
def report(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    steps = input.get("steps", [])
    for number, (percent, message) in enumerate(steps, start=1):
        ctx.progress(percent, message)
        ctx.log(f"step {number}: {message}")
    return {
        "thread": threading.current_thread().name,
        "main_thread": threading.current_thread() is threading.main_thread(),
        "steps": len(steps),
    }
