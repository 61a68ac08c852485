"""API tokens: created for a user, shown once, checked by hash."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import timedelta

from orchestrator.auth.identity import Identity, Revocation
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.errors import FieldViolation, InvalidArgument, NotFound, Unauthenticated
from orchestrator.store import Database
from orchestrator.store import api_tokens as token_store
from orchestrator.store.api_tokens import ApiToken
from orchestrator.store.types import utcnow

# Tells an API token from a JWT at a glance (and to secret scanners).
PREFIX = "orch_"
SCOPES = ("worker", "api")
_NAME = re.compile(r"^[\w .:@/-]{1,128}$")
_SHOWN_PREFIX = 12
MAX_LIFETIME_SECONDS = 10 * 366 * 24 * 3600
# last_used_at is for people reading a list: a write per call is not worth it.
_TOUCH_EVERY = timedelta(minutes=1)


def is_api_token(token: str) -> bool:
    return token.startswith(PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokens:
    def __init__(self, database: Database, credentials: CredentialWatch) -> None:
        self._db = database
        self._credentials = credentials

    async def create(
        self, caller: Identity, name: str, scope: str, expires_in_seconds: int
    ) -> tuple[str, ApiToken]:
        """The secret (shown once) and the stored token."""
        problems = []
        if not _NAME.match(name):
            problems.append(FieldViolation("name", "1-128 letters, digits, spaces or _.:@/-"))
        if scope not in SCOPES:
            problems.append(FieldViolation("scope", "must be 'worker' or 'api'"))
        if not 0 <= expires_in_seconds <= MAX_LIFETIME_SECONDS:
            problems.append(
                FieldViolation(
                    "expires_in_seconds", f"must be in [0, {MAX_LIFETIME_SECONDS}] (0: no expiry)"
                )
            )
        if problems:
            raise InvalidArgument(violations=problems)
        secret = PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        token = ApiToken(
            id=str(uuid.uuid4()),
            owner_id=caller.user_id,
            name=name,
            scope=scope,
            prefix=secret[:_SHOWN_PREFIX],
            created_at=now,
            expires_at=now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None,
            last_used_at=None,
            revoked_at=None,
        )
        async with self._db.write() as conn:
            await token_store.create(conn, token, _digest(secret))
        return secret, token

    async def list(self, caller: Identity) -> list[ApiToken]:
        async with self._db.read() as conn:
            return await token_store.owned_by(conn, None if caller.is_admin else caller.user_id)

    async def revoke(self, caller: Identity, token_id: str) -> ApiToken:
        async with self._db.write() as conn:
            token = await token_store.by_id(conn, token_id)
            if token is None or not (caller.is_admin or token.owner_id == caller.user_id):
                raise NotFound(f"API token {token_id} not found")
            await token_store.revoke(conn, token_id)
            await self._credentials.revoke(conn, Revocation(token_id=token_id))
            revoked = await token_store.by_id(conn, token_id)
        assert revoked is not None
        return revoked

    async def authenticate(self, secret: str) -> Identity:
        async with self._db.read() as conn:
            found = await token_store.by_hash(conn, _digest(secret))
        now = utcnow()
        if (
            found is None
            or found.disabled
            or found.token.revoked_at is not None
            or (found.token.expires_at is not None and found.token.expires_at <= now)
        ):
            raise Unauthenticated()
        last_used = found.token.last_used_at
        if last_used is None or now - last_used > _TOUCH_EVERY:
            async with self._db.write() as conn:
                await token_store.touch(conn, found.token.id, now)
        return Identity(
            user_id=found.token.owner_id,
            role=found.role,
            credential="api_token",
            scope=found.token.scope,
            token_id=found.token.id,
        )
