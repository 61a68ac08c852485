"""Login attempts, throttled per username and per peer address over a sliding
window that every replica shares (the attempts are rows in the database).

An attempt is counted before its password is checked, as "being checked",
in a transaction that commits before the check begins; a wrong password
turns it into a failure, a right one takes it back. So attempts in flight
count, on every replica, and at most `per_user` passwords of one name (and
`per_peer` from one address) can fail in any window, however many arrive at
once:

- failures fill the room: refused, with the wait until the oldest leaves
  the window;
- failures and checks in flight fill it: the attempt waits (up to
  PATIENCE_SECONDS) for those checks to end, then goes on or is refused;
- successful logins never count, nor do attempts whose caller got no
  answer (it hung up); an attempt refused here was never checked and does
  not count either;
- an attempt whose outcome never came (its replica died mid-check) counts
  as a failure once it is STALE_SECONDS old.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.errors import ResourceExhausted
from orchestrator.store import Database, login_failures
from orchestrator.store.types import utcnow

# A check ends within the login queue's bound, about a second (see
# auth/passwords.LoginQueue); these leave room for a loaded machine.
PATIENCE_SECONDS = 5.0
STALE_SECONDS = 10.0
# How often a waiting attempt looks again for checks ending on other
# replicas (this replica's wake it at once).
_POLL_SECONDS = 0.05
# What fits the key column with the "checking:" prefix; longer (or
# unprintable) names and addresses are counted under a digest.
_MAX_KEY = 300
_CHECKING = "checking:"

BUSY = "too many logins in progress: try again shortly"


@dataclass(frozen=True)
class Attempt:
    """An attempt being checked: its rows, and the keys it fails under."""

    row_ids: tuple[int, ...]
    keys: tuple[str, ...]


def _key(kind: str, value: str) -> str:
    key = f"{kind}:{value}"
    if len(key) <= _MAX_KEY and key.isprintable():
        return key
    return f"{kind}#{hashlib.sha256(value.encode(errors='surrogatepass')).hexdigest()}"


class LoginThrottle:
    def __init__(
        self,
        database: Database,
        *,
        per_user: int,
        per_peer: int,
        window_seconds: float,
        patience_seconds: float = PATIENCE_SECONDS,
    ) -> None:
        self._db = database
        self._limits = {"user": per_user, "peer": per_peer}
        self._window = timedelta(seconds=window_seconds)
        self._patience = patience_seconds
        self._next_sweep = 0.0
        # Set (and replaced) whenever a check here ends: wakes the waiting.
        self._ended = asyncio.Event()

    async def attempt(self, username: str, peer: str) -> Attempt:
        """Count one attempt as being checked, waiting while other checks
        fill the room left; ResourceExhausted, with the wait, when failures
        fill it, or when the checks in flight do not end in time."""
        limits = {
            _key("user", username.casefold()): self._limits["user"],
            _key("peer", peer): self._limits["peer"],
        }
        give_up = time.monotonic() + self._patience
        while True:
            ended = self._ended
            async with self._db.write() as conn:
                attempt = await self._count(conn, limits)
            if attempt is not None:
                return attempt
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                raise ResourceExhausted(BUSY)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _POLL_SECONDS)):
                    await ended.wait()

    async def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the attempt is a failure from now on."""
        async with self._db.write() as conn:
            await login_failures.remove(conn, attempt.row_ids)
            await login_failures.add(conn, attempt.keys, utcnow())
        self._end()

    async def take_back(self, attempt: Attempt) -> None:
        """The attempt does not count: its password was right, or no answer
        reached its caller."""
        async with self._db.write() as conn:
            await login_failures.remove(conn, attempt.row_ids)
        self._end()

    def _end(self) -> None:
        self._ended.set()
        self._ended = asyncio.Event()

    async def _count(self, conn: AsyncConnection, limits: dict[str, int]) -> Attempt | None:
        """The attempt, counted; None while checks in flight fill the room."""
        await login_failures.lock(conn, limits)
        now = utcnow()
        checking = {key: _CHECKING + key for key in limits}
        recent = await login_failures.since(conn, [*limits, *checking.values()], now - self._window)
        stale = now - timedelta(seconds=STALE_SECONDS)
        wait = 0.0
        full = False
        for key, limit in limits.items():
            in_flight = [t for t in recent[checking[key]] if t > stale]
            failures = sorted(recent[key] + [t for t in recent[checking[key]] if t <= stale])
            if len(failures) >= limit:
                wait = max(wait, self._wait(failures, limit, now))
            elif len(failures) + len(in_flight) >= limit:
                full = True
        if wait > 0:
            raise ResourceExhausted(
                f"too many failed logins: try again in {math.ceil(wait)} seconds"
            )
        if full:
            return None
        await self._sweep(conn, now)
        row_ids = await login_failures.add(conn, checking.values(), now)
        return Attempt(tuple(row_ids), tuple(limits))

    def _wait(self, failures: list[datetime], limit: int, now: datetime) -> float:
        """Seconds until all but limit - 1 of `failures` have left the window."""
        opens = failures[len(failures) - limit] + self._window
        return (opens - now).total_seconds()

    async def _sweep(self, conn: AsyncConnection, now: datetime) -> None:
        """Now and then (once a window, per replica), forget the attempts no
        window sees any more, so the table holds about two windows' worth."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self._window.total_seconds()
        await login_failures.delete_before(conn, now - self._window)
