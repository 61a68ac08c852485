"""The worker: handlers by task type, and the loop that keeps it connected
until it is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Callable

import grpc
from grpc import aio

from orchestrator import __version__, logs
from orchestrator.channel import ClientTls, auth_metadata, open_channel, tls_from_env, url_from_env
from orchestrator.proto import workers_pb2, workers_pb2_grpc
from orchestrator.status import from_rpc_error
from orchestrator.worker._handlers import (
    Handler,
    HandlerT,
    Registration,
    registration,
    running_threads,
)
from orchestrator.worker._session import Call, Outcome, ProtocolError, Session
from orchestrator.worker._stop import StopRequest

log = logging.getLogger("orchestrator.worker")

USER_AGENT = f"orchestrator-worker/{__version__}"
DEFAULT_SLOTS = 10
DEFAULT_GRACE_SECONDS = 10.0
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
# Covers gRPC's own connect timeout (20s), so a stalled server gives way to
# a retry instead of holding the worker forever.
HANDSHAKE_TIMEOUT_SECONDS = 30.0
# Retrying cannot fix these: a bad token, a token of the wrong scope, a hello
# the server will never accept.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


def retry_delay(failures: int) -> float:
    """Exponential backoff with jitter, so a fleet of workers that lost the
    same server does not come back in lockstep."""
    ceiling = min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(failures, 32))
    return random.uniform(ceiling / 2, ceiling)


class _CannotConnect(Exception):
    """A connection attempt failed in a way worth retrying."""


class Worker:
    """Runs the handlers registered on it for the tasks the server assigns,
    at most `slots` at a time.

    Handlers are `async def handler(ctx, input)` (run on the event loop) or
    plain `def handler(ctx, input)` (run in a thread of their own), and
    return a dict (the task's output) or None.
    """

    def __init__(self, name: str | None = None, *, slots: int = DEFAULT_SLOTS) -> None:
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.slots = slots
        self._check()
        self._registrations: dict[str, Registration] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: StopRequest | None = None
        self._grace_before_run: float | None = None
        self._tls: ClientTls | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.name!r} slots={self.slots} types={list(self.task_types)}>"

    def task(self, task_type: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator: the function handles tasks of `task_type`."""

        def register(handler: HandlerT) -> HandlerT:
            self.register(task_type, handler)
            return handler

        return register

    def register(self, task_type: str, handler: Handler) -> None:
        """Register `handler` for `task_type` (the decorator's plain form)."""
        existing = self._registrations.get(task_type)
        if existing is not None:
            raise ValueError(f"task type {task_type!r} already has a handler: {existing.handler!r}")
        self._registrations[task_type] = registration(task_type, handler)

    @property
    def task_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._registrations))

    async def run(
        self, url: str | None = None, token: str | None = None, tls: ClientTls | None = None
    ) -> None:
        """Serve until `stop()`: connect to `url` (else `ORCHESTRATOR_URL`,
        else localhost:50051) with `token` (else `ORCHESTRATOR_TOKEN`), over
        TLS if `tls` (else the environment, see `orchestrator.channel`) says
        so, reconnecting with backoff whenever the server goes away.

        Raises `orchestrator.errors.Unauthenticated`, `PermissionDenied` or
        `InvalidArgument` when the server refuses the worker outright.
        """
        url = url or url_from_env()
        token = token or os.environ.get("ORCHESTRATOR_TOKEN")
        self._tls = tls or tls_from_env()
        if not token:
            raise ValueError("no token: pass token= or set ORCHESTRATOR_TOKEN")
        if not self._registrations:
            raise ValueError("the worker has no handlers: register one with @worker.task(TYPE)")
        self._check()
        if self._loop is not None:
            raise RuntimeError("this worker is already running")
        self._loop = asyncio.get_running_loop()
        self._stop = stop = StopRequest()
        if self._grace_before_run is not None:
            stop.request(self._grace_before_run)
        try:
            await self._serve(url, token, stop)
        finally:
            self._loop = self._stop = self._grace_before_run = None
        if threads := running_threads():
            log.warning(
                "%d handler thread(s) ignored cancellation and still run; "
                "they end when the process does",
                threads,
            )
        log.info("stopped")

    def stop(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        """Stop taking work; give running handlers `grace` seconds to finish,
        then cancel them and hand their tasks back. `run()` returns when
        done. Safe from any thread and from signal handlers; a second call
        may only shorten the grace."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None:
            before = self._grace_before_run
            self._grace_before_run = grace if before is None else min(before, grace)
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to stop
            loop.call_soon_threadsafe(stop.request, grace)

    async def _serve(self, url: str, token: str, stop: StopRequest) -> None:
        hello = workers_pb2.Hello(
            name=self.name, task_types=self.task_types, slots=self.slots, version=__version__
        )
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.requested:
            began = loop.time()
            try:
                outcome = await self._connect_once(url, token, hello, stop)
            except _CannotConnect as exc:
                delay = retry_delay(failures)
                log.warning("cannot connect to %s (%s); retrying in %.1fs", url, exc, delay)
            else:
                if outcome is Outcome.STOPPED:
                    return
                # A server that welcomes and drops at once must not be
                # hammered: only a connection that lasted resets the backoff.
                if loop.time() - began > MAX_RETRY_SECONDS:
                    failures = 0
                delay = retry_delay(failures)
                log.info("reconnecting to %s in %.1fs", url, delay)
            failures += 1
            await stop.sleep(delay)

    async def _connect_once(
        self, url: str, token: str, hello: workers_pb2.Hello, stop: StopRequest
    ) -> Outcome:
        channel = open_channel(url, USER_AGENT, self._tls)
        try:
            call = workers_pb2_grpc.WorkerServiceStub(channel).Connect(
                metadata=auth_metadata(token)
            )
            session = Session(
                call, url=url, hello=hello, registrations=self._registrations, stop=stop
            )
            welcome = await self._welcome(session, call, stop)
            if welcome is None:
                return Outcome.STOPPED
            log.info("connected to %s as worker %s", url, welcome.worker_id)
            with logs.bound(worker_id=welcome.worker_id):
                return await session.serve(welcome)
        finally:
            await channel.close()

    async def _welcome(
        self, session: Session, call: Call, stop: StopRequest
    ) -> workers_pb2.Welcome | None:
        """The server's welcome, or None if a stop came first."""
        handshake = asyncio.ensure_future(session.handshake())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {handshake, stopped},
                timeout=HANDSHAKE_TIMEOUT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopped.cancel()
            if not handshake.done():
                handshake.cancel()
                call.cancel()
                await asyncio.wait({handshake})
        if handshake.cancelled():
            if stop.requested:
                return None
            raise _CannotConnect(f"no welcome within {HANDSHAKE_TIMEOUT_SECONDS:g}s")
        try:
            return handshake.result()
        except aio.AioRpcError as exc:
            if exc.code() in FATAL_CODES:
                raise from_rpc_error(exc) from None
            raise _CannotConnect(f"{exc.code().name}: {exc.details() or ''}") from None
        except ProtocolError as exc:
            raise _CannotConnect(str(exc)) from None

    def _check(self) -> None:
        if not isinstance(self.slots, int) or isinstance(self.slots, bool) or self.slots < 1:
            raise ValueError(f"slots must be a positive integer, got {self.slots!r}")
        if not self.name.strip():
            raise ValueError("a worker's name must not be empty")
