"""How open streams end when they must: UNAVAILABLE once the server shuts
down, UNAUTHENTICATED once the caller's credential stops working (logged
out, revoked, user disabled: on any replica).

An open stream costs no task or future of its own for this: a stop
interrupts the stream's own task (as `asyncio.timeout` does) while it waits
for its next item, and one task per server waits for shutdown on behalf of
every stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from orchestrator.auth.identity import Identity
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.errors import Unauthenticated, Unavailable
from orchestrator.services.shutdown import SHUTTING_DOWN, Shutdown

T = TypeVar("T")

REVOKED = "credentials revoked: log in again"


class Stop:
    """Ends one stream from outside; the first reason given wins."""

    __slots__ = ("_interrupted", "_waiting", "reason")

    def __init__(self) -> None:
        self.reason: Callable[[], Exception] | None = None
        # The stream's task while it waits for its next item, else None.
        self._waiting: asyncio.Task[object] | None = None
        self._interrupted = False

    def __call__(self, reason: Callable[[], Exception]) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        waiting = self._waiting
        # The stream's own task (a stop it caused itself) sees the reason at
        # its next item instead.
        if waiting is not None and waiting is not asyncio.current_task():
            self._interrupted = True
            waiting.cancel()

    def arm(self, task: asyncio.Task[object]) -> None:
        self._waiting = task

    def disarm(self) -> bool:
        """Whether the wait was interrupted; takes back that cancellation."""
        self._waiting = None
        if not self._interrupted:
            return False
        self._interrupted = False
        task = asyncio.current_task()
        assert task is not None
        task.uncancel()
        return True


class Streams:
    def __init__(self, shutdown: Shutdown, credentials: CredentialWatch) -> None:
        self._shutdown = shutdown
        self._credentials = credentials
        self._open: set[Stop] = set()
        self._shutdown_watch: asyncio.Task[None] | None = None

    async def guard(self, caller: Identity, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """Items of `source` until it ends, shutdown begins or the caller's
        credential stops working."""
        stop = Stop()
        release = self._credentials.hold(caller, lambda: stop(lambda: Unauthenticated(REVOKED)))
        self._open.add(stop)
        if self._shutdown.started:
            stop(_shutting_down)
        elif self._shutdown_watch is None:
            self._shutdown_watch = asyncio.create_task(
                self._end_all_at_shutdown(), name="streams-shutdown"
            )
        try:
            async for item in until(source, stop):
                yield item
        finally:
            self._open.discard(stop)
            release()

    async def _end_all_at_shutdown(self) -> None:
        await self._shutdown.wait()
        for stop in list(self._open):
            stop(_shutting_down)


def _shutting_down() -> Exception:
    return Unavailable(SHUTTING_DOWN)


async def until(source: AsyncIterator[T], stop: Stop) -> AsyncIterator[T]:
    """Items of `source` until it ends or `stop` is called; then the error
    of the reason it was given."""
    try:
        while True:
            if stop.reason is not None:
                raise stop.reason()
            # Whoever drives this generator now.
            task = asyncio.current_task()
            assert task is not None
            stop.arm(task)
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Ours alone (the caller did not go away too): the stop's error.
                if stop.disarm() and not task.cancelling() and stop.reason is not None:
                    raise stop.reason() from None
                raise
            finally:
                stop.disarm()
            yield item
    finally:
        # Also when the caller went away: nothing may go on reading for it.
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
