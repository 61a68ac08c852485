"""`client.users` (admins only) and `client.tokens`: the account side of
AuthService."""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator.client import _convert
from orchestrator.client._transport import Transport
from orchestrator.client._values import ApiToken, NewApiToken, Page, User
from orchestrator.errors import NotFound
from orchestrator.proto import auth_pb2


class Users:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(self, username: str, password: str, role: str = "member") -> User:
        request = auth_pb2.CreateUserRequest(username=username, password=password, role=role)
        reply = await self._transport.unary(lambda s: s.auth.CreateUser, request, idempotent=False)
        return _convert.user(reply)

    async def get(self, user_id: str) -> User:
        request = auth_pb2.GetUserRequest(id=user_id)
        reply = await self._transport.unary(lambda s: s.auth.GetUser, request, idempotent=True)
        return _convert.user(reply)

    async def list(self, *, page_size: int = 0, page_token: str = "") -> Page[User]:
        """One page of users, by name."""
        request = auth_pb2.ListUsersRequest(page_size=page_size, page_token=page_token)
        reply = await self._transport.unary(lambda s: s.auth.ListUsers, request, idempotent=True)
        return Page(tuple(_convert.user(u) for u in reply.users), reply.next_page_token)

    async def list_all(self) -> AsyncIterator[User]:
        token = ""
        while True:
            page = await self.list(page_size=500, page_token=token)
            for user in page.items:
                yield user
            token = page.next_page_token
            if not token:
                return

    async def find(self, username_or_id: str) -> User:
        """The user with this name or id."""
        async for user in self.list_all():
            if username_or_id in (user.username, user.id):
                return user
        raise NotFound(f"no user is named {username_or_id!r} or has that id")

    # Setting a flag twice, or the same password twice, leaves the same
    # state: these are safe to repeat after a lost reply.

    async def disable(self, user_id: str) -> User:
        """The user can no longer log in; their sessions end at once."""
        request = auth_pb2.DisableUserRequest(id=user_id)
        reply = await self._transport.unary(lambda s: s.auth.DisableUser, request, idempotent=True)
        return _convert.user(reply)

    async def enable(self, user_id: str) -> User:
        request = auth_pb2.EnableUserRequest(id=user_id)
        reply = await self._transport.unary(lambda s: s.auth.EnableUser, request, idempotent=True)
        return _convert.user(reply)

    async def reset_password(self, user_id: str, new_password: str) -> User:
        """A new password; the user's sessions end at once."""
        request = auth_pb2.ResetPasswordRequest(id=user_id, new_password=new_password)
        reply = await self._transport.unary(
            lambda s: s.auth.ResetPassword, request, idempotent=True
        )
        return _convert.user(reply)


class Tokens:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(self, name: str, scope: str, expires_in: int = 0) -> NewApiToken:
        """A new API token: scope "worker" (WorkerService only) or "api"
        (acts as you); `expires_in` seconds, 0 for never. The secret is in
        the reply only: the server keeps its hash."""
        request = auth_pb2.CreateApiTokenRequest(
            name=name, scope=scope, expires_in_seconds=expires_in
        )
        reply = await self._transport.unary(
            lambda s: s.auth.CreateApiToken, request, idempotent=False
        )
        return NewApiToken(reply.token, _convert.api_token(reply.api_token))

    async def list(self) -> tuple[ApiToken, ...]:
        """Your tokens (an admin's: everyone's), revoked ones included."""
        reply = await self._transport.unary(
            lambda s: s.auth.ListApiTokens, auth_pb2.ListApiTokensRequest(), idempotent=True
        )
        return tuple(_convert.api_token(t) for t in reply.api_tokens)

    async def revoke(self, token_id: str) -> ApiToken:
        """Stop the token working (revoking it twice is harmless)."""
        request = auth_pb2.RevokeApiTokenRequest(id=token_id)
        reply = await self._transport.unary(
            lambda s: s.auth.RevokeApiToken, request, idempotent=True
        )
        return _convert.api_token(reply)
