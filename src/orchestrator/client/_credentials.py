"""Who the client is: a fixed token (an API token), a login session whose
access token is refreshed as needed, or nobody yet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from orchestrator.client._session import Session, SessionFile

# Exchanges a session's refresh token for a new session.
Renew = Callable[[Session], Awaitable[Session]]


class Credentials:
    def __init__(
        self,
        *,
        token: str | None = None,
        session: Session | None = None,
        session_file: SessionFile | None = None,
    ) -> None:
        if token and session:
            raise ValueError("give a token or a session, not both")
        self._token = token or None
        self._session = session
        self._file = session_file
        # One refresh at a time: a refresh token is spent by its first use,
        # so a second concurrent refresh would be refused.
        self._lock = asyncio.Lock()

    @property
    def session(self) -> Session | None:
        return self._session

    @property
    def present(self) -> bool:
        return bool(self._token or self._session)

    @property
    def refreshable(self) -> bool:
        return self._session is not None

    def use(self, session: Session) -> None:
        """A new login replaces whatever the client had."""
        self._token = None
        self._session = session
        if self._file is not None:
            self._file.save(session)

    def forget(self) -> None:
        if self._session is not None and self._file is not None:
            self._file.clear()
        self._token = None
        self._session = None

    async def bearer(self, renew: Renew) -> str | None:
        """The token for the next call, refreshed first if it expires soon."""
        if self._token:
            return self._token
        session = self._session
        if session is None:
            return None
        if session.needs_refresh():
            session = await self.renew(session.access_token, renew)
        return session.access_token

    async def renew(self, stale_access_token: str, renew: Renew) -> Session:
        """A session whose access token is not `stale_access_token`: the one
        another caller refreshed meanwhile, a newer one another process
        saved, or a fresh one from the server."""
        async with self._lock:
            current = self._session
            if current is None:
                raise RuntimeError("no session to refresh")
            if current.access_token != stale_access_token:
                return current
            exclusive = self._file.exclusive() if self._file else contextlib.nullcontext()
            async with exclusive:
                saved = self._file.load() if self._file else None
                if (
                    saved is not None
                    and (saved.url, saved.username) == (current.url, current.username)
                    and saved.refresh_token != current.refresh_token
                ):
                    # Another process refreshed first: ours is spent, its is not.
                    current = self._session = saved
                    if not saved.needs_refresh():
                        return saved
                fresh = await renew(current)
                self._session = fresh
                if self._file is not None:
                    self._file.save(fresh)
                return fresh
