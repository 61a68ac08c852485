"""When something that failed runs again: exponential backoff with jitter.

For a task's failed attempt (the settings' base and maximum), for a write
transaction that lost a race with another (`CONFLICT`), and for work that
must not be dropped while the database is down (`OUTAGE`).
"""

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
        # The exponent is capped: a wait that goes on for hours must not overflow.
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** min(max(0, attempt - 1), 32))
        return float(ceiling * random.uniform(0.5, 1.0))


# The two sides of a deadlock come back at different moments, so the
# transaction that lost usually goes through on its next try.
CONFLICT = Backoff(base_seconds=0.01, max_seconds=0.2)
CONFLICT_TRIES = 5
# PostgreSQL takes seconds to restart; trying every 2 s at most finds it back
# soon after.
OUTAGE = Backoff(base_seconds=0.1, max_seconds=2.0)
