"""Login attempts, throttled per username and per peer address over a sliding
window that every replica shares (the attempts are rows in the database).

An attempt is counted before its password is checked, in a transaction that
commits before the check begins, so attempts still in flight count, on every
replica: however many arrive at once, at most `per_user` passwords are
checked for one name (and `per_peer` from one address) in any window. An
attempt whose password turns out right is taken back in the transaction
that opens its session, so successful logins never count; an attempt refused
here was never checked and does not count either.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.errors import ResourceExhausted
from orchestrator.store import login_failures
from orchestrator.store.types import utcnow

# What fits the key column; longer (or unprintable) names and addresses are
# counted under a digest.
_MAX_KEY = 320


@dataclass(frozen=True)
class Attempt:
    """A counted attempt: its rows, to take back if the password was right."""

    row_ids: tuple[int, ...]


def _key(kind: str, value: str) -> str:
    key = f"{kind}:{value}"
    if len(key) <= _MAX_KEY and key.isprintable():
        return key
    return f"{kind}#{hashlib.sha256(value.encode(errors='surrogatepass')).hexdigest()}"


class LoginThrottle:
    def __init__(self, per_user: int, per_peer: int, window_seconds: float) -> None:
        self._limits = {"user": per_user, "peer": per_peer}
        self._window = timedelta(seconds=window_seconds)
        self._next_sweep = 0.0

    async def count(self, conn: AsyncConnection, username: str, peer: str) -> Attempt:
        """Count one attempt, in the caller's write transaction; ResourceExhausted,
        with the wait, when either key has no room left in the window."""
        limits = {
            _key("user", username.casefold()): self._limits["user"],
            _key("peer", peer): self._limits["peer"],
        }
        await login_failures.lock(conn, limits)
        now = utcnow()
        recent = await login_failures.since(conn, limits, now - self._window)
        wait = 0.0
        for key, limit in limits.items():
            times = recent[key]
            if len(times) >= limit:
                # Room again once all but limit - 1 of them have left the window.
                opens = times[len(times) - limit] + self._window
                wait = max(wait, (opens - now).total_seconds())
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed logins: try again in {math.ceil(wait)} seconds"
            )
        await self._sweep(conn)
        return Attempt(tuple(await login_failures.add(conn, limits, now)))

    async def take_back(self, conn: AsyncConnection, attempt: Attempt) -> None:
        """The password was right: the attempt is not a failure."""
        await login_failures.remove(conn, attempt.row_ids)

    async def _sweep(self, conn: AsyncConnection) -> None:
        """Now and then (once a window, per replica), forget the attempts no
        window sees any more, so the table holds about two windows' worth."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self._window.total_seconds()
        await login_failures.delete_before(conn, utcnow() - self._window)
