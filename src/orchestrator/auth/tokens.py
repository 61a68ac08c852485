"""Access tokens: HS256 JWTs, and nothing else accepted.

The algorithm is pinned on decode, so `alg: none` or an RS256 token signed
with the HMAC secret as a "public key" are refused; audience and issuer are
checked; a refresh-type token is not an access token.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from orchestrator.errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "orchestrator"
AUDIENCE = "orchestrator"
ACCESS = "access"
LEEWAY_SECONDS = 10
_REQUIRED = ["exp", "iat", "nbf", "sub", "jti", "iss", "aud"]
# Tokens whose signature was checked, kept until they expire: a client sends
# the same one on every call, and checking it is much of a small call's cost.
_MAX_VERIFIED = 10_000


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: str
    session_id: str
    token_id: str
    expires_at: float


class JwtManager:
    def __init__(self, secret: str, expiration_seconds: int) -> None:
        self._secret = secret
        self.expiration_seconds = expiration_seconds
        self._verified: dict[str, AccessClaims] = {}

    def issue(self, *, user_id: str, role: str, session_id: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.expiration_seconds,
            "jti": str(uuid.uuid4()),
            "typ": ACCESS,
            "role": role,
            "sid": session_id,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        """The claims of a valid access token; Unauthenticated otherwise, with
        one message whatever the reason, so a caller learns nothing."""
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at + LEEWAY_SECONDS > time.time():
                return known
            del self._verified[token]
        claims = self._decode(token)
        if len(self._verified) >= _MAX_VERIFIED:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError:
            raise Unauthenticated() from None
        if claims.get("typ") != ACCESS or not isinstance(claims.get("sid"), str):
            raise Unauthenticated()
        return AccessClaims(
            user_id=str(claims["sub"]),
            role=str(claims.get("role", "")),
            session_id=claims["sid"],
            token_id=str(claims["jti"]),
            expires_at=float(claims["exp"]),
        )


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)
