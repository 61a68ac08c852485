"""Who is calling. The gate sets it for the duration of one RPC; handlers
read it with `current()`."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Literal

from orchestrator.errors import PermissionDenied, Unauthenticated


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: str
    # The login session (refresh-token family), for "session" credentials.
    session_id: str | None = None
    credential: Literal["session", "api_token"] = "session"
    # For API tokens: "worker" or "api".
    scope: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


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
    _current.reset(token)


def require_admin() -> Identity:
    identity = current()
    if not identity.is_admin:
        raise PermissionDenied("only an admin may do this")
    return identity
