"""One place where calls meet the network: the channel, the token on every
call, a refresh when the server says the token is no good, retries of the
calls that are safe to repeat, and gRPC status turned back into
`orchestrator.errors`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

import grpc
from grpc import aio

from orchestrator import __version__, tracing
from orchestrator.channel import ClientTls, auth_metadata, open_channel
from orchestrator.client._credentials import Credentials
from orchestrator.client._retry import RetryPolicy
from orchestrator.client._session import Session
from orchestrator.errors import OrchestratorError, Unauthenticated, Unavailable
from orchestrator.proto import (
    auth_pb2,
    auth_pb2_grpc,
    health_pb2_grpc,
    schedules_pb2_grpc,
    status_pb2_grpc,
    tasks_pb2_grpc,
    workers_pb2_grpc,
    workflows_pb2_grpc,
)
from orchestrator.status import from_rpc_error

log = logging.getLogger("orchestrator.client")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Metadata = tuple[tuple[str, str], ...]

USER_AGENT = f"orchestrator-client/{__version__}"
DEFAULT_TIMEOUT_SECONDS = 30.0


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Who calls, and from which trace: the active span's `traceparent`
    (when one is), so the server's span of the call is its child."""
    auth = auth_metadata(token) if token else ()
    traceparent = tracing.current_traceparent()
    return auth if traceparent is None else (*auth, (tracing.TRACEPARENT, traceparent))


class Stubs:
    """The services on one channel."""

    def __init__(self, channel: aio.Channel) -> None:
        self.channel = channel
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        self.workflows = workflows_pb2_grpc.WorkflowServiceStub(channel)
        self.schedules = schedules_pb2_grpc.ScheduleServiceStub(channel)
        self.workers = workers_pb2_grpc.WorkerServiceStub(channel)
        self.health = health_pb2_grpc.HealthServiceStub(channel)
        self.status = status_pb2_grpc.StatusServiceStub(channel)


class Transport:
    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials,
        tls: ClientTls | None,
        retry: RetryPolicy,
        stream_retry: RetryPolicy,
        timeout: float,
    ) -> None:
        self.url = url
        self.credentials = credentials
        self.retry = retry
        self.stream_retry = stream_retry
        self.timeout = timeout
        self._tls = tls
        self._stubs = Stubs(open_channel(url, USER_AGENT, tls))
        self._retired: list[aio.Channel] = []

    @property
    def stubs(self) -> Stubs:
        return self._stubs

    def reconnect(self, stale: Stubs) -> None:
        """A fresh channel after `stale` lost the server: an old one would
        wait out gRPC's own reconnect backoff (up to minutes) before trying
        again, whatever our retry policy says. Calls still on the old
        channel finish there; it is closed with the client."""
        if self._stubs is stale:
            self._retired.append(stale.channel)
            self._stubs = Stubs(open_channel(self.url, USER_AGENT, self._tls))

    async def close(self) -> None:
        for channel in (*self._retired, self._stubs.channel):
            await channel.close()
        self._retired.clear()

    async def bearer(self) -> str | None:
        return await self.credentials.bearer(self.exchange)

    async def renew(self, rejected_token: str | None) -> bool:
        """After the server refused `rejected_token`: whether a refreshed one
        is now in hand (False: there is nothing to refresh)."""
        if rejected_token is None or not self.credentials.refreshable:
            return False
        await self.credentials.renew(rejected_token, self.exchange)
        return True

    async def exchange(self, session: Session) -> Session:
        """A new session for `session`'s refresh token (which is spent)."""
        try:
            reply = await self.unary(
                lambda s: s.auth.Refresh,
                auth_pb2.RefreshRequest(refresh_token=session.refresh_token),
                idempotent=False,
                authenticated=False,
            )
        except Unauthenticated:
            raise Unauthenticated("the session has expired or was ended: log in again") from None
        return Session.issued(
            session.url,
            reply.user.username or session.username,
            reply.access_token,
            reply.refresh_token,
            reply.expires_in,
        )

    async def unary(
        self,
        pick: Callable[[Stubs], aio.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        *,
        idempotent: bool,
        authenticated: bool = True,
    ) -> Resp:
        """One call: refreshed and repeated once if the token was refused,
        repeated with backoff on UNAVAILABLE if `idempotent`."""
        attempts = self.retry.start()
        renewed = False
        while True:
            token: str | None = None
            stubs = self._stubs
            try:
                token = await self.bearer() if authenticated else None
                return await pick(stubs)(
                    request,
                    metadata=call_metadata(token),
                    timeout=self.timeout,
                )
            except aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and not renewed:
                    renewed = await self.renew(token)
                    if renewed:
                        continue
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise self.error(exc) from None
                self.reconnect(stubs)
                failure = self.error(exc)
            except Unavailable as exc:  # the refresh before the call found no server
                failure = exc
            if not idempotent or (delay := attempts.next_delay()) is None:
                raise failure
            log.info("%s; retrying in %.2fs", failure.message, delay)
            await asyncio.sleep(delay)

    def error(self, exc: aio.AioRpcError) -> OrchestratorError:
        """The domain error a failed call stands for, saying where when the
        server could not be reached."""
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"cannot reach the server at {self.url}: {exc.details()}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Unavailable(f"no answer from the server at {self.url} in time")
        return from_rpc_error(exc)
