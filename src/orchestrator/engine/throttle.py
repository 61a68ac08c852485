"""Failed-login throttling, per username and per peer address.

A sliding window in memory: enough to make guessing slow on one replica
(each replica counts on its own). Successful logins do not count.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque

from orchestrator.errors import ResourceExhausted

# Bounds memory whatever the number of names or addresses tried.
MAX_TRACKED = 100_000


class LoginThrottle:
    def __init__(self, per_user: int, per_peer: int, window_seconds: float) -> None:
        self._limits = {"user": per_user, "peer": per_peer}
        self._window = window_seconds
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def check(self, username: str, peer: str) -> None:
        """ResourceExhausted, with the wait, if either key is over its limit."""
        now = time.monotonic()
        wait = 0.0
        for key in self._keys(username, peer):
            recent = self._recent(key, now)
            if recent is not None and len(recent) >= self._limits[key[0]]:
                wait = max(wait, recent[0] + self._window - now)
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed logins: try again in {math.ceil(wait)} seconds"
            )

    def failed(self, username: str, peer: str) -> None:
        now = time.monotonic()
        for key in self._keys(username, peer):
            self._failures.setdefault(key, deque()).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED:
            self._failures.popitem(last=False)

    def _keys(self, username: str, peer: str) -> list[tuple[str, str]]:
        return [("user", username.casefold()), ("peer", peer)]

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times
