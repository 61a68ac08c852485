"""When a failed attempt runs again: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_seconds: float = 1.0
    max_seconds: float = 300.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (from 1).
        The jitter spreads retries of tasks that failed together."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        return float(ceiling * random.uniform(0.5, 1.0))
