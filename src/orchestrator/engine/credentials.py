"""Credentials that stop working end the streams that run on them, on every
replica.

The facts are the rows: a revoked session or token, a disabled user. The
transaction that writes one ends this replica's matching streams as it
commits and, on PostgreSQL, wakes the other replicas with a NOTIFY. Each
replica also re-checks the credentials of its open streams every second, so
one that missed the NOTIFY (a lost LISTEN connection), or a token that
simply expired, is caught all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.auth.identity import Identity, Revocation
from orchestrator.engine.background import survived
from orchestrator.store import Database
from orchestrator.store import credentials as credential_store
from orchestrator.store.notify import notify
from orchestrator.store.types import utcnow

CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class _Holder:
    identity: Identity
    end: Callable[[], None]


class CredentialWatch:
    def __init__(self, database: Database, replica_id: str) -> None:
        self._db = database
        self._replica_id = replica_id
        self._holders: dict[int, _Holder] = {}
        self._ids = itertools.count()
        self._wake = asyncio.Event()
        self._elsewhere: list[Callable[[], None]] = []

    def hold(self, identity: Identity, end: Callable[[], None]) -> Callable[[], None]:
        """Until the returned release is called, `end` is called (once) if
        the credential stops working."""
        key = next(self._ids)
        self._holders[key] = _Holder(identity, end)

        def release() -> None:
            self._holders.pop(key, None)

        return release

    async def revoke(
        self,
        conn: AsyncConnection,
        revocation: Revocation,
        then: Callable[[], None] = lambda: None,
    ) -> None:
        """Part of the transaction that revokes: once it commits, `then` runs,
        the matching streams here end and the other replicas are told."""
        await notify(conn, self._replica_id, revoked=True)

        connection = conn.sync_connection
        assert connection is not None
        # Whichever of commit and rollback comes first decides; the other
        # listener, left on the pooled connection, then does nothing when
        # someone else's transaction ends.
        decided = False

        def on_commit(_conn: object) -> None:
            nonlocal decided
            if not decided:
                decided = True
                then()
                self._end(lambda identity: identity.revoked_by(revocation))

        def on_rollback(_conn: object) -> None:
            nonlocal decided
            decided = True

        event.listen(connection, "commit", on_commit, once=True)
        event.listen(connection, "rollback", on_rollback, once=True)

    def when_revoked_elsewhere(self, forget: Callable[[], None]) -> None:
        """Call `forget` when another replica announces a revocation (it does
        not say whose): for caches of credential checks."""
        self._elsewhere.append(forget)

    def revoked_elsewhere(self) -> None:
        for forget in self._elsewhere:
            forget()
        self._wake.set()

    async def run(self) -> None:
        """Re-check the held credentials every second, or at once when woken."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_SECONDS)
            self._wake.clear()
            with survived("credential check"):
                await self.check()

    async def check(self) -> None:
        held = {holder.identity.credential_key for holder in self._holders.values()}
        if not held:
            return
        async with self._db.read() as conn:
            dead = await credential_store.dead(conn, held, utcnow())
        if dead:
            self._end(lambda identity: identity.credential_key in dead)

    def _end(self, matches: Callable[[Identity], bool]) -> None:
        for key, holder in list(self._holders.items()):
            if matches(holder.identity):
                del self._holders[key]
                holder.end()
