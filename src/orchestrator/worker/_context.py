"""What a handler sees of its task, and its way of talking back."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.proto import workers_pb2
from orchestrator.worker._outbox import Outbox


class TaskContext:
    """One attempt at one task, as its handler sees it.

    `progress()` and `log()` never block and may be called from the event
    loop or from the thread a plain-function handler runs in. Once the task
    is cancelled, handed back or finished, they are silently dropped: the
    server no longer wants to hear about this attempt.
    """

    def __init__(
        self,
        *,
        task_id: str,
        fencing_token: int,
        type: str,
        attempt: int,
        max_attempts: int,
        title: str,
        labels: Mapping[str, str],
        input: dict[str, Any],
        outbox: Outbox,
    ) -> None:
        self.task_id = task_id
        self.fencing_token = fencing_token
        self.type = type
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.title = title
        self.labels: Mapping[str, str] = dict(labels)
        self.input = input
        self._outbox = outbox
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._cancelled = asyncio.Event()
        self._closed = False

    def __repr__(self) -> str:
        return f"<TaskContext {self.type} {self.task_id} attempt {self.attempt}>"

    @property
    def cancelled(self) -> bool:
        """True once the server (or the worker's shutdown) wants this attempt
        to stop. Thread handlers should check it between steps: a thread
        cannot be interrupted from outside."""
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Return once the attempt is cancelled (for async handlers that
        wait on something cancellation would not interrupt)."""
        await self._cancelled.wait()

    def progress(self, percent: float, message: str = "") -> None:
        """Report how far along the task is, 0 to 100. Reports that pile up
        faster than the network sends them are merged, newest wins."""
        if not (math.isfinite(percent) and 0 <= percent <= 100):
            raise ValueError(f"progress percent must be between 0 and 100, got {percent}")
        report = workers_pb2.WorkerMessage(
            progress=workers_pb2.TaskProgress(
                task_id=self.task_id,
                fencing_token=self.fencing_token,
                percent=round(percent),
                message=str(message),
            )
        )
        self._post(lambda: self._outbox.put_progress(report))

    def log(self, line: str) -> None:
        """Append a line to the task's log on the server."""
        report = workers_pb2.WorkerMessage(
            log=workers_pb2.TaskLog(
                task_id=self.task_id, fencing_token=self.fencing_token, line=str(line)
            )
        )
        self._post(lambda: self._outbox.put(report))

    def _post(self, deliver: Callable[[], None]) -> None:
        def deliver_if_open() -> None:
            if not self._closed:
                deliver()

        if threading.get_ident() == self._loop_thread:
            # Straight in, not via call_soon: a report must not overtake the
            # completion that the same coroutine queues right after it.
            deliver_if_open()
            return
        try:
            self._loop.call_soon_threadsafe(deliver_if_open)
        except RuntimeError:
            pass  # the loop is closed: a thread outlived its worker, nobody listens

    # The session's side: loop thread only.

    def _cancel(self) -> None:
        """Drop further reports and raise the cancellation flag."""
        self._closed = True
        self._cancelled.set()

    def _flag_cancelled(self) -> None:
        """Raise the flag only, for an attempt whose last word is still to come."""
        self._cancelled.set()

    def _finish(self, message: workers_pb2.WorkerMessage) -> bool:
        """Queue the attempt's last word unless it has already been closed;
        True if it was queued."""
        if self._closed:
            return False
        self._closed = True
        self._outbox.put(message)
        return True
