"""Something changed: the wake-up of the dashboard's live pages.

Event streams follow one task or run and must see every event; a page only
needs to know that what it shows may be stale, and then reads it again. A
page of many things waits for any change, a page of one task or run for
the changes of those keys alone. The hot path pays a counter per commit,
and a dictionary lookup per changed key only while some page watches keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class ChangeFeed:
    def __init__(self) -> None:
        # Counts commits that changed something: a read taken at one version
        # shows every change before it.
        self.version = 0
        self._any: asyncio.Event | None = None
        self._keys: dict[str, set[asyncio.Event]] = {}
        self.closed = False

    def waiter(self, *keys: str) -> asyncio.Event:
        """Set at the next change (of one of `keys`, when given). Taken
        before reading what a page shows, so a change during the read is not
        missed; `forget` it once done with."""
        if self.closed:
            done = asyncio.Event()
            done.set()
            return done
        if not keys:
            if self._any is None:
                self._any = asyncio.Event()
            return self._any
        waiter = asyncio.Event()
        self.also(waiter, keys)
        return waiter

    def also(self, waiter: asyncio.Event, keys: Iterable[str]) -> None:
        """Set `waiter` at a change of these keys too (learnt from a read)."""
        for key in keys:
            self._keys.setdefault(key, set()).add(waiter)

    def forget(self, waiter: asyncio.Event, keys: Iterable[str]) -> None:
        for key in keys:
            waiters = self._keys.get(key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._keys[key]

    def changed(self, keys: Iterable[str]) -> None:
        """Committed changes to these tasks and runs ("*": to anything, as a
        poke from another replica that lost track says)."""
        self.version += 1
        if self._any is not None:
            self._any.set()
            self._any = None
        if self._keys:
            for key in keys:
                if key == "*":
                    self._wake_all_keys()
                    return
                for waiter in self._keys.pop(key, ()):
                    waiter.set()

    def close(self) -> None:
        """The server is stopping: every waiter is woken, and later ones are
        set from the start."""
        self.closed = True
        self.changed(["*"])

    def _wake_all_keys(self) -> None:
        for waiters in self._keys.values():
            for waiter in waiters:
                waiter.set()
        self._keys.clear()
