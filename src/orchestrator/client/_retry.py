"""How long to keep trying when the server cannot be reached."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for calls that are safe to repeat and
    for reconnecting streams: `first_delay` doubling up to `max_delay`, for
    at most `give_up_after` seconds (0: never retry)."""

    first_delay: float = 0.1
    max_delay: float = 2.0
    give_up_after: float = 30.0

    def __post_init__(self) -> None:
        if self.first_delay <= 0 or self.max_delay < self.first_delay:
            raise ValueError("need 0 < first_delay <= max_delay")
        if self.give_up_after < 0:
            raise ValueError("give_up_after must not be negative")

    def delay(self, failures: int) -> float:
        """The pause after `failures` failures in a row (from 0); jittered so
        clients that lost the same server do not come back in lockstep."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** min(failures, 32))
        return random.uniform(ceiling / 2, ceiling)

    def start(self) -> Attempts:
        return Attempts(self)


# Streams ride out a server restart: a longer wait is worth it than for one call.
STREAMS = RetryPolicy(give_up_after=60.0)


class Attempts:
    """One run of retries: `next_delay()` is the pause before the next try,
    or None once the time is up."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._failures = 0
        self._deadline = time.monotonic() + policy.give_up_after

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            return None
        delay = min(self._policy.delay(self._failures), remaining)
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Progress was made: the next failure starts a fresh run."""
        self._failures = 0
        self._deadline = time.monotonic() + self._policy.give_up_after
