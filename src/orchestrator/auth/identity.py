"""Who is calling. The gate sets it for the duration of one RPC; handlers
read it with `current()`."""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import PermissionDenied, Unauthenticated
from orchestrator.model import Credential


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: str
    # The login session (refresh-token family), for "session" credentials.
    session_id: str | None = None
    credential: Literal["session", "api_token"] = "session"
    # For API tokens: "worker" or "api", and which token.
    scope: str | None = None
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def credential_key(self) -> Credential:
        """The credential to re-check while a stream of this caller lives."""
        if self.credential == "api_token":
            return Credential("api_token", self.user_id, self.token_id or "")
        return Credential("session", self.user_id, self.session_id or "")

    def revoked_by(self, revocation: Revocation) -> bool:
        """Whether this credential stops working because of `revocation`."""
        return (
            revocation.user_id == self.user_id
            or (revocation.sessions_of == self.user_id and self.credential == "session")
            or (revocation.session_id is not None and revocation.session_id == self.session_id)
            or (revocation.token_id is not None and revocation.token_id == self.token_id)
        )


@dataclass(frozen=True)
class Revocation:
    """Credentials that just stopped working: all of a user's, a user's login
    sessions, one login session, or one API token."""

    user_id: str | None = None
    sessions_of: str | None = None
    session_id: str | None = None
    token_id: str | None = None


_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "orchestrator_identity", default=None
)


def current() -> Identity:
    identity = _current.get()
    if identity is None:
        # Only reachable if a handler of an open method asks who is calling.
        raise Unauthenticated()
    return identity


def bind(identity: Identity) -> contextvars.Token[Identity | None]:
    return _current.set(identity)


def unbind(token: contextvars.Token[Identity | None]) -> None:
    # A stream closed from another task (its caller went away) ends in a
    # context that never saw the token; that context is being discarded.
    with contextlib.suppress(ValueError):
        _current.reset(token)


def require_admin() -> Identity:
    identity = current()
    if not identity.is_admin:
        raise PermissionDenied("only an admin may do this")
    return identity
