"""A login session, and the file that keeps it between commands.

The file lives in $ORCHESTRATOR_CONFIG_DIR (default ~/.config/orchestrator),
readable by its owner only. Refresh tokens rotate on every use, so processes
sharing the file take a lock around each refresh and re-read the file first:
one that finds a newer session uses it instead of spending a token another
process has already spent (which the server would take for theft).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path

SESSION_FILE = "session.json"
_LOCK_FILE = "session.lock"
# Refresh this long before the access token expires, at most, so a call in
# flight does not arrive with a token that expired on the way.
_MAX_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class Session:
    """What `login` gives: where, who, and the tokens."""

    url: str
    username: str
    access_token: str
    refresh_token: str
    # Unix time at which the access token expires, by this machine's clock.
    expires_at: float
    # How long the access token was issued for, in seconds.
    lifetime: float

    @classmethod
    def issued(
        cls, url: str, username: str, access_token: str, refresh_token: str, expires_in: float
    ) -> Session:
        return cls(url, username, access_token, refresh_token, time.time() + expires_in, expires_in)

    def needs_refresh(self, now: float | None = None) -> bool:
        """Whether the access token expires soon (or has): within a quarter
        of its lifetime, or 30 s, whichever is shorter."""
        margin = min(_MAX_MARGIN_SECONDS, self.lifetime / 4)
        return (time.time() if now is None else now) >= self.expires_at - margin


def config_dir() -> Path:
    """$ORCHESTRATOR_CONFIG_DIR, else ~/.config/orchestrator."""
    configured = os.environ.get("ORCHESTRATOR_CONFIG_DIR", "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".config/orchestrator"


class SessionFile:
    """The saved session: `load`, `save` (atomically, mode 0600), `clear`."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self.path = self.directory / SESSION_FILE
        # Taken around a refresh (see `exclusive`).
        self.lock_path = self.directory / _LOCK_FILE

    def __repr__(self) -> str:
        return f"SessionFile({str(self.directory)!r})"

    def load(self) -> Session | None:
        """The saved session; None if there is none or it cannot be read
        (an unreadable session is as good as none: log in again)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Session(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, session: Session) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{SESSION_FILE}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        # Created 0600 from the start: no moment at which others may read it.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(asdict(session), file, indent=2)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise

    def clear(self) -> bool:
        """Forget the session; whether there was one."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Held by one process at a time, around a refresh."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # In a thread: another process may hold it for the length of a call.
            await asyncio.to_thread(fcntl.flock, descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock
