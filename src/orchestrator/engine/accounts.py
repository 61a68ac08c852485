"""Accounts: logging in, sessions with rotating refresh tokens, users."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.auth import passwords
from orchestrator.auth.identity import Identity, Revocation
from orchestrator.auth.tokens import JwtManager, new_refresh_token
from orchestrator.engine import pages
from orchestrator.engine.api_tokens import ApiTokens, is_api_token
from orchestrator.engine.credentials import CredentialWatch
from orchestrator.engine.throttle import LoginThrottle
from orchestrator.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from orchestrator.store import Database
from orchestrator.store import sessions as session_store
from orchestrator.store import users as user_store
from orchestrator.store.types import utcnow
from orchestrator.store.users import User

log = logging.getLogger(__name__)

ROLES = ("admin", "member")
BAD_LOGIN = "invalid username or password"
_LIVE_SECONDS = 1.0
_MAX_LIVE = 10_000


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    # The login session (refresh-token family): what logout and revocations end.
    session_id: str


def _digest(refresh_token: str) -> str:
    return hashlib.sha256(refresh_token.encode()).hexdigest()


def check_new_user(username: str, password: str, role: str) -> None:
    problems = []
    if reason := passwords.username_problem(username):
        problems.append(FieldViolation("username", reason))
    if reason := passwords.password_problem(password):
        problems.append(FieldViolation("password", reason))
    if role not in ROLES:
        problems.append(FieldViolation("role", "must be 'admin' or 'member'"))
    if problems:
        raise InvalidArgument(violations=problems)


class Accounts:
    def __init__(
        self,
        database: Database,
        jwt: JwtManager,
        refresh_ttl_seconds: int,
        throttle: LoginThrottle,
        credentials: CredentialWatch,
        *,
        login_queue: passwords.LoginQueue,
        refresh_reuse_seconds: float,
    ) -> None:
        self._db = database
        self._throttle = throttle
        self._login_queue = login_queue
        # Two refreshes of one token this close together are a client racing
        # itself, not a stolen token: the loser is refused, the family is kept.
        self._refresh_reuse = timedelta(seconds=refresh_reuse_seconds)
        # Ends the open streams of a credential that stops working.
        self._credentials = credentials
        # session id -> (user id, role, valid until): see authenticate().
        self._live: dict[str, tuple[str, str, float]] = {}
        credentials.when_revoked_elsewhere(self._forget_all)
        self._generation = 0
        self.api_tokens = ApiTokens(database, credentials)
        self._jwt = jwt
        self._refresh_ttl = timedelta(seconds=refresh_ttl_seconds)

    async def login(self, username: str, password: str, peer: str) -> Tokens:
        # The queue first: a flood is refused before it costs the database
        # anything. The attempt is counted (and committed, for every replica
        # to see) before the slow check, so attempts in flight count too.
        with self._login_queue.admit():
            attempt = await self._throttle.attempt(username, peer)
            try:
                async with self._db.read() as conn:
                    user = await user_store.by_username(conn, username)
                # Same work and same answer for an unknown user, a disabled
                # one and a wrong password: nothing tells them apart.
                valid = await passwords.verify_password_async(
                    user.password_hash if user else None, password
                )
            except BaseException:
                # No answer reached the caller (it hung up, or the database
                # failed): it learned nothing, so the attempt does not count.
                await asyncio.shield(self._throttle.take_back(attempt))
                raise
        if user is None or not valid or user.disabled:
            await self._throttle.failed(attempt)
            raise Unauthenticated(BAD_LOGIN)
        await self._throttle.take_back(attempt)
        async with self._db.write() as conn:
            return await self._open_session(conn, user, family_id=None)

    async def refresh(self, refresh_token: str) -> Tokens:
        # A refused refresh may still have to commit (a revoked family), so
        # the transaction ends normally and the refusal is raised after it.
        async with self._db.write() as conn:
            tokens = await self._rotate(conn, refresh_token)
        if tokens is None:
            raise Unauthenticated()
        return tokens

    async def _rotate(self, conn: AsyncConnection, refresh_token: str) -> Tokens | None:
        session = await session_store.by_refresh_hash(conn, _digest(refresh_token))
        now = utcnow()
        if session is None or session.revoked_at or session.expires_at <= now:
            return None
        if session.rotated_at is None and await session_store.mark_rotated(conn, session.id):
            user = await user_store.by_id(conn, session.user_id)
            if user is None or user.disabled:
                return None
            return await self._open_session(conn, user, family_id=session.family_id)
        if session.rotated_at is not None and now - session.rotated_at > self._refresh_reuse:
            log.warning(
                "refresh token reused: session family revoked",
                extra={"user_id": session.user_id},
            )
            await session_store.revoke_family(conn, session.family_id)
            await self._revoke(conn, Revocation(session_id=session.family_id))
        return None

    async def logout(self, identity: Identity, refresh_token: str) -> None:
        async with self._db.write() as conn:
            if refresh_token:
                session = await session_store.by_refresh_hash(conn, _digest(refresh_token))
                if session is None or session.user_id != identity.user_id:
                    raise Unauthenticated()
                await session_store.revoke_family(conn, session.family_id)
                await self._revoke(conn, Revocation(session_id=session.family_id))
            elif identity.session_id:
                await session_store.revoke_family(conn, identity.session_id)
                await self._revoke(conn, Revocation(session_id=identity.session_id))

    async def authenticate(self, token: str) -> Identity:
        if is_api_token(token):
            return await self.api_tokens.authenticate(token)
        claims = self._jwt.verify(token)
        return await self.session_identity(claims.user_id, claims.session_id)

    async def session_identity(self, user_id: str, session_id: str) -> Identity:
        """Who a login session is, if it still works. A signature is not
        enough: logout, a revoked session or a disabled user must stop it at
        once, not when a token expires."""
        # The answer is kept for a moment (a read per call is much of a
        # call's cost): a revocation here clears it on commit, one on another
        # replica when its NOTIFY arrives, and a missed NOTIFY leaves it a
        # second at most.
        now = time.monotonic()
        cached = self._live.get(session_id)
        if cached and cached[0] == user_id and cached[2] > now:
            role: str | None = cached[1]
        else:
            generation = self._generation
            async with self._db.read() as conn:
                role = await session_store.live_role(conn, user_id, session_id)
            # Not kept if a revocation committed while reading: the read may
            # predate it.
            if role is not None and generation == self._generation:
                if len(self._live) >= _MAX_LIVE:
                    self._live.clear()
                self._live[session_id] = (user_id, role, now + _LIVE_SECONDS)
        if role is None:
            self._forget(session_id=session_id)
            raise Unauthenticated()
        return Identity(user_id=user_id, role=role, session_id=session_id)

    async def _revoke(self, conn: AsyncConnection, revocation: Revocation) -> None:
        """Cached checks are forgotten once the revocation is committed: a
        call checked in between would otherwise read (and keep) the state
        from before it."""
        await self._credentials.revoke(
            conn,
            revocation,
            then=lambda: self._forget(
                session_id=revocation.session_id,
                user_id=revocation.user_id or revocation.sessions_of,
            ),
        )

    def _forget_all(self) -> None:
        self._generation += 1
        self._live.clear()

    def _forget(self, *, session_id: str | None = None, user_id: str | None = None) -> None:
        self._generation += 1
        if session_id is not None:
            self._live.pop(session_id, None)
        if user_id is not None:
            for key in [k for k, v in self._live.items() if v[0] == user_id]:
                del self._live[key]

    async def create_user(self, username: str, password: str, role: str) -> User:
        check_new_user(username, password, role)
        password_hash = await passwords.hash_password_async(password)
        async with self._db.write() as conn:
            return await user_store.create(conn, username, password_hash, role)

    async def get_user(self, user_id: str) -> User:
        async with self._db.read() as conn:
            user = await user_store.by_id(conn, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        return user

    async def list_users(self, page_size: int, page_token: str) -> tuple[list[User], str]:
        limit = pages.page_size(page_size)
        async with self._db.read() as conn:
            found = await user_store.page(conn, page_token or None, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return found, found[-1].username if more else ""

    async def set_disabled(self, caller: Identity, user_id: str, disabled: bool) -> User:
        if disabled and user_id == caller.user_id:
            raise FailedPrecondition("you cannot disable your own account")
        await self.get_user(user_id)
        async with self._db.write() as conn:
            await user_store.set_disabled(conn, user_id, disabled)
            if disabled:
                await session_store.revoke_user(conn, user_id)
                await self._revoke(conn, Revocation(user_id=user_id))
        return await self.get_user(user_id)

    async def reset_password(self, user_id: str, password: str) -> User:
        if problem := passwords.password_problem(password):
            raise InvalidArgument.field("new_password", problem)
        await self.get_user(user_id)
        password_hash = await passwords.hash_password_async(password)
        async with self._db.write() as conn:
            await user_store.set_password(conn, user_id, password_hash)
            # Whoever knew the old password must not keep a session.
            await session_store.revoke_user(conn, user_id)
            await self._revoke(conn, Revocation(sessions_of=user_id))
        return await self.get_user(user_id)

    async def get_user_by_name(self, username: str) -> User:
        async with self._db.read() as conn:
            user = await user_store.by_username(conn, username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def ensure_admin(self, username: str, password: str) -> None:
        """Make sure the bootstrap admin exists, with this password and role."""
        check_new_user(username, password, "admin")
        password_hash = await passwords.hash_password_async(password)
        async with self._db.write() as conn:
            user = await user_store.by_username(conn, username)
            if user is None:
                await user_store.create(conn, username, password_hash, "admin")
                log.info("bootstrap admin created", extra={"username": username})
                return
            await user_store.set_password(conn, user.id, password_hash)
            if user.role != "admin":
                await user_store.set_role(conn, user.id, "admin")
            log.info("bootstrap admin present", extra={"username": username})

    async def _open_session(
        self, conn: AsyncConnection, user: User, family_id: str | None
    ) -> Tokens:
        refresh_token = new_refresh_token()
        session = await session_store.create(
            conn,
            user_id=user.id,
            family_id=family_id,
            refresh_token_hash=_digest(refresh_token),
            expires_at=utcnow() + self._refresh_ttl,
        )
        access = self._jwt.issue(user_id=user.id, role=user.role, session_id=session.family_id)
        return Tokens(access, refresh_token, self._jwt.expiration_seconds, user, session.family_id)
