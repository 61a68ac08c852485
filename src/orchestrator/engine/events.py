"""Live delivery of durable events.

Events are written to the database in the transaction that makes the change;
after commit they are published here for live followers. Each follower has a
buffer of STREAM_BUFFER_SIZE events: one that falls behind is marked as
overflowed and its buffer dropped, and it catches up from the log, so no
event is lost and memory stays bounded.

An idle follower costs nothing: it waits on memory alone, never on a timer.
On one replica every committed event is published here. Events another
replica writes arrive as a `poke` (PostgreSQL NOTIFY, delivered if and only
if their transaction commits), and a LISTEN connection that was lost pokes
everyone once it is back; a poked follower reads the log. A timed re-read
per follower would cost a query per follower per period whatever happens
(2,000 idle streams took a whole core).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar

# Events read from the log per query while catching up.
REPLAY_BATCH = 500


class Sequenced(Protocol):
    @property
    def sequence(self) -> int: ...


E = TypeVar("E", bound=Sequenced)


class _Subscriber(Generic[E]):
    __slots__ = ("buffer", "capacity", "overflowed", "wakeup")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer: collections.deque[E] = collections.deque()
        self.overflowed = False
        self.wakeup = asyncio.Event()

    def offer(self, event: E) -> bool:
        """Whether this event made the follower fall back to the log."""
        dropped = False
        if len(self.buffer) >= self.capacity:
            self.buffer.clear()
            dropped = not self.overflowed
            self.overflowed = True
        elif not self.overflowed:
            self.buffer.append(event)
        self.wakeup.set()
        return dropped


class EventHub(Generic[E]):
    """Followers by key (a task id, a run id)."""

    def __init__(self, buffer_size: int) -> None:
        self._buffer_size = buffer_size
        self._subscribers: dict[str, set[_Subscriber[E]]] = {}
        # Read by the metrics at scrape time: plain counts cost the hot path
        # next to nothing.
        self.delivered = 0
        self.dropped_to_log = 0

    def publish(self, key: str, events: Iterable[E]) -> None:
        subscribers = self._subscribers.get(key)
        if not subscribers:
            return
        for event in events:
            for subscriber in subscribers:
                self.dropped_to_log += subscriber.offer(event)
            self.delivered += len(subscribers)

    def poke(self, keys: list[str]) -> None:
        """Make followers of these keys ("*": all) read the log again: events
        were written elsewhere (another replica)."""
        everyone = "*" in keys
        for key, subscribers in self._subscribers.items():
            if everyone or key in keys:
                for subscriber in subscribers:
                    subscriber.overflowed = True
                    subscriber.wakeup.set()

    async def follow(
        self,
        key: str,
        after_sequence: int,
        read_log: Callable[[int, int], Awaitable[list[E]]],
        is_last: Callable[[E], Awaitable[bool]],
    ) -> AsyncIterator[E]:
        """Every event after `after_sequence`, in order, exactly once, until
        `is_last` says an event ends the stream."""
        subscriber: _Subscriber[E] = _Subscriber(self._buffer_size)
        # Subscribe before reading the log, so nothing falls between the two.
        self._subscribers.setdefault(key, set()).add(subscriber)
        last = after_sequence
        try:
            while True:
                # Cleared before the read: what is dropped from now on is
                # either in this read or flags the next one.
                subscriber.overflowed = False
                replayed = await read_log(last, REPLAY_BATCH)
                if replayed:
                    for event in replayed:
                        last = event.sequence
                        yield event
                        if await is_last(event):
                            return
                    continue
                async for event in self._live(subscriber, last):
                    last = event.sequence
                    yield event
                    if await is_last(event):
                        return
        finally:
            subscribers = self._subscribers[key]
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[key]

    async def _live(self, subscriber: _Subscriber[E], last: int) -> AsyncIterator[E]:
        """Buffered events in order; returns to let the caller read the log
        after an overflow (or a poke) or a gap."""
        while True:
            while subscriber.buffer:
                event = subscriber.buffer.popleft()
                if event.sequence <= last:
                    continue
                if event.sequence != last + 1:
                    return
                last = event.sequence
                yield event
            if subscriber.overflowed:
                return
            subscriber.wakeup.clear()
            await subscriber.wakeup.wait()
