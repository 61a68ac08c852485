"""Signing in to the dashboard: the session cookie and CSRF tokens.

The cookie names a login session (the same sessions gRPC logins open), signed
so it cannot be forged; every request asks the accounts whether that session
still works, so logout, a revoked session or a disabled user end it at once.
The browser never holds a refresh token or a bearer token for the API.

CSRF: every form carries a token derived from the session (an HMAC of its id),
so a page on another site cannot make one; the sign-in form, before any
session, pairs a random cookie with its form field. SameSite=Strict on the
cookies is a second fence, not the only one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

SESSION_COOKIE = "orchestrator_session"
SIGN_IN_COOKIE = "orchestrator_sign_in"
CSRF_FIELD = "csrf_token"
# A web session's token must never pass as an API access token, nor one as the other.
_AUDIENCE = "orchestrator-dashboard"
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class WebSession:
    user_id: str
    session_id: str


class SessionCookies:
    def __init__(self, secret: str, lifetime_seconds: int) -> None:
        self._secret = secret
        self._csrf_key = hashlib.sha256(b"dashboard csrf\0" + secret.encode()).digest()
        self.lifetime_seconds = lifetime_seconds

    def issue(self, user_id: str, session_id: str) -> str:
        now = int(time.time())
        claims = {
            "aud": _AUDIENCE,
            "sub": user_id,
            "sid": session_id,
            "iat": now,
            "exp": now + self.lifetime_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def read(self, value: str | None) -> WebSession | None:
        if not value:
            return None
        try:
            claims = jwt.decode(
                value,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=_AUDIENCE,
                options={"require": ["exp", "sub", "sid", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        user_id, session_id = claims["sub"], claims["sid"]
        if not isinstance(user_id, str) or not isinstance(session_id, str):
            return None
        return WebSession(user_id, session_id)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, session_id: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session_id), token or "")


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected or "", given or "")
