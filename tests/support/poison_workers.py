"""Handlers that misbehave the way real ones do, for the poison-task tests:

    python -m orchestrator worker tests.support.poison_workers:worker

- `crash`: kills its own process with SIGKILL, as an out-of-memory kill or a
  segfault in a native library would.
- `huge`: succeeds with `{"blob": "x" * input.bytes}`, an output as large
  as asked for.
- `small`: succeeds with its input.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from orchestrator.worker import TaskContext, Worker

worker = Worker(name="poison-test-worker", slots=2)


@worker.task("crash")
def crash(ctx: TaskContext, input: dict[str, Any]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@worker.task("huge")
async def huge(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    return {"blob": "x" * int(input["bytes"])}


@worker.task("small")
async def small(ctx: TaskContext, input: dict[str, Any]) -> dict[str, Any]:
    return input
