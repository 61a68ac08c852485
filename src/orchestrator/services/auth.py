"""orchestrator.auth.AuthService: sessions and users."""

from __future__ import annotations

from typing import Any

from grpc import aio

from orchestrator.auth import identity
from orchestrator.engine.accounts import Accounts, Tokens
from orchestrator.proto import auth_pb2, auth_pb2_grpc
from orchestrator.services.convert import timestamp
from orchestrator.store.api_tokens import ApiToken
from orchestrator.store.users import User

Context = aio.ServicerContext[Any, Any]


def user_message(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=user.id,
        username=user.username,
        role=user.role,
        disabled=user.disabled,
        created_at=timestamp(user.created_at),
    )


def _login_response(tokens: Tokens) -> auth_pb2.LoginResponse:
    return auth_pb2.LoginResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        token_type="Bearer",
        user=user_message(tokens.user),
    )


def _token_message(token: ApiToken) -> auth_pb2.ApiToken:
    return auth_pb2.ApiToken(
        id=token.id,
        name=token.name,
        scope=token.scope,
        prefix=token.prefix,
        owner_id=token.owner_id,
        created_at=timestamp(token.created_at),
        expires_at=timestamp(token.expires_at),
        last_used_at=timestamp(token.last_used_at),
        revoked_at=timestamp(token.revoked_at),
    )


def _peer(context: Context) -> str:
    """The caller's address without its port: what throttling counts by."""
    peer = context.peer() or "unknown"
    return peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        tokens = await self._accounts.login(request.username, request.password, _peer(context))
        return _login_response(tokens)

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        return _login_response(await self._accounts.refresh(request.refresh_token))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Context
    ) -> auth_pb2.LogoutResponse:
        await self._accounts.logout(identity.current(), request.refresh_token)
        return auth_pb2.LogoutResponse()

    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: Context
    ) -> auth_pb2.WhoAmIResponse:
        caller = identity.current()
        user = await self._accounts.get_user(caller.user_id)
        return auth_pb2.WhoAmIResponse(
            user=user_message(user), credential=caller.credential, scope=caller.scope or ""
        )

    async def CreateUser(
        self, request: auth_pb2.CreateUserRequest, context: Context
    ) -> auth_pb2.User:
        identity.require_admin()
        user = await self._accounts.create_user(request.username, request.password, request.role)
        return user_message(user)

    async def GetUser(self, request: auth_pb2.GetUserRequest, context: Context) -> auth_pb2.User:
        identity.require_admin()
        return user_message(await self._accounts.get_user(request.id))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Context
    ) -> auth_pb2.ListUsersResponse:
        identity.require_admin()
        found, token = await self._accounts.list_users(request.page_size, request.page_token)
        return auth_pb2.ListUsersResponse(
            users=[user_message(u) for u in found], next_page_token=token
        )

    async def DisableUser(
        self, request: auth_pb2.DisableUserRequest, context: Context
    ) -> auth_pb2.User:
        caller = identity.require_admin()
        return user_message(await self._accounts.set_disabled(caller, request.id, True))

    async def EnableUser(
        self, request: auth_pb2.EnableUserRequest, context: Context
    ) -> auth_pb2.User:
        caller = identity.require_admin()
        return user_message(await self._accounts.set_disabled(caller, request.id, False))

    async def ResetPassword(
        self, request: auth_pb2.ResetPasswordRequest, context: Context
    ) -> auth_pb2.User:
        identity.require_admin()
        return user_message(await self._accounts.reset_password(request.id, request.new_password))

    async def CreateApiToken(
        self, request: auth_pb2.CreateApiTokenRequest, context: Context
    ) -> auth_pb2.CreateApiTokenResponse:
        secret, token = await self._accounts.api_tokens.create(
            identity.current(), request.name, request.scope, request.expires_in_seconds
        )
        return auth_pb2.CreateApiTokenResponse(token=secret, api_token=_token_message(token))

    async def ListApiTokens(
        self, request: auth_pb2.ListApiTokensRequest, context: Context
    ) -> auth_pb2.ListApiTokensResponse:
        found = await self._accounts.api_tokens.list(identity.current())
        return auth_pb2.ListApiTokensResponse(api_tokens=[_token_message(t) for t in found])

    async def RevokeApiToken(
        self, request: auth_pb2.RevokeApiTokenRequest, context: Context
    ) -> auth_pb2.ApiToken:
        token = await self._accounts.api_tokens.revoke(identity.current(), request.id)
        return _token_message(token)
