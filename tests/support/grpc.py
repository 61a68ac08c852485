"""Async gRPC client helpers for tests against a running server."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from grpc import aio

from orchestrator.proto import auth_pb2, auth_pb2_grpc
from tests.support.server import ADMIN_PASSWORD, ADMIN_USERNAME

T = TypeVar("T")
Metadata = tuple[tuple[str, str], ...]


@contextlib.asynccontextmanager
async def channel(address: str) -> AsyncIterator[aio.Channel]:
    """An insecure channel to `address`, closed on exit."""
    ch = aio.insecure_channel(address)
    try:
        yield ch
    finally:
        await ch.close()


async def login(
    ch: aio.Channel, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD
) -> Metadata:
    """Logs in and returns the call metadata that carries the access token."""
    response = await auth_pb2_grpc.AuthServiceStub(ch).Login(
        auth_pb2.LoginRequest(username=username, password=password), timeout=30
    )
    return (("authorization", f"Bearer {response.access_token}"),)


# `timeout` is this shared helper's documented signature, hence the noqa.
async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10,  # noqa: ASYNC109
    interval: float = 0.02,
) -> T:
    """Polls `predicate` (sync or async) until it returns something truthy and
    returns that; TimeoutError after `timeout` seconds. Only for conditions
    that have no event or log line to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {predicate!r}")
        await asyncio.sleep(interval)


def status_code(error: BaseException) -> grpc.StatusCode | None:
    """The status code of a failed call, None for anything else."""
    return error.code() if isinstance(error, aio.AioRpcError) else None
