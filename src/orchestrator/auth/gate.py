"""The gate: one interceptor in front of every method.

Protected by default: only the methods listed in OPEN pass without a bearer
token, so a method added later cannot be forgotten. A worker-scoped API token
may call WorkerService only.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from orchestrator import handlers
from orchestrator.auth import identity as identity_context
from orchestrator.auth.identity import Identity
from orchestrator.errors import PermissionDenied, Unauthenticated
from orchestrator.handlers import Handler

OPEN_METHODS = frozenset(
    {
        "/orchestrator.health.HealthService/Check",
        "/orchestrator.health.HealthService/Watch",
        "/orchestrator.auth.AuthService/Login",
        "/orchestrator.auth.AuthService/Refresh",
    }
)
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
WORKER_SERVICE = "/orchestrator.workers.WorkerService/"
# Anything longer is not a token we issue; refuse before parsing it.
MAX_AUTHORIZATION_LENGTH = 8192

Authenticate = Callable[[str], Awaitable[Identity]]


def is_open(method: str) -> bool:
    return method in OPEN_METHODS or method.startswith(OPEN_SERVICES)


def bearer_token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The token of the `authorization: Bearer …` header, or Unauthenticated."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        raise Unauthenticated()
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(values[0]) > MAX_AUTHORIZATION_LENGTH:
        raise Unauthenticated()
    return token


class AuthGate(aio.ServerInterceptor):
    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or is_open(method):
            return handler
        metadata = handler_call_details.invocation_metadata
        return handlers.wrap(handler, lambda _context, _request: self._admit(method, metadata))

    @contextlib.asynccontextmanager
    async def _admit(self, method: str, metadata: Any) -> AsyncIterator[None]:
        # Runs inside the call, so a refusal is mapped like any domain error.
        identity = await self._authenticate(bearer_token(metadata))
        if identity.scope == "worker" and not method.startswith(WORKER_SERVICE):
            raise PermissionDenied("a worker token may only be used by workers")
        token = identity_context.bind(identity)
        try:
            yield
        finally:
            identity_context.unbind(token)


__all__ = ["AuthGate", "bearer_token", "is_open"]
