"""The one place where exceptions become gRPC status, and failed calls are
logged (method, code, duration). Requests are decoded here too, so one that
cannot be is refused like any invalid argument (`services.decoding`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from orchestrator import handlers
from orchestrator.errors import Internal, OrchestratorError, Unimplemented
from orchestrator.handlers import Handler
from orchestrator.services.decoding import decoder
from orchestrator.status import to_status

log = logging.getLogger("orchestrator.rpc")

# Refusals of what a client asked, in its own terms (a lookup by name that
# tries the id first, a change the task's state does not allow): the caller
# is told everything, and the operator has nothing to do, so they log at
# DEBUG. Refused credentials and throttling stay at INFO: many of them are
# someone guessing passwords or a worker left with a revoked token. The
# server's own failures (INTERNAL, UNAVAILABLE) stay at INFO too; an
# unexpected exception is also logged with its traceback.
_CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class ErrorInterceptor(aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        parse = handler.request_deserializer
        return handlers.wrap(
            handler,
            lambda context, _request: _mapped(method, context),
            decode=None if parse is None else decoder(parse),
        )


@contextlib.asynccontextmanager
async def _mapped(method: str, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
    started = time.monotonic()
    try:
        yield
    except (asyncio.CancelledError, aio.AbortError):
        raise
    except OrchestratorError as error:
        await _abort(context, method, started, error)
    except NotImplementedError:
        await _abort(context, method, started, Unimplemented(f"{method} is not implemented yet"))
    except Exception:
        log.exception("unexpected error in %s", method)
        await _abort(context, method, started, Internal())


async def _abort(
    context: aio.ServicerContext[Any, Any],
    method: str,
    started: float,
    error: OrchestratorError,
) -> None:
    log.log(
        logging.DEBUG if error.grpc_code in _CLIENT_ERRORS else logging.INFO,
        "rpc failed",
        extra={
            "method": method,
            "code": error.grpc_code.name,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "reason": error.message,
        },
    )
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)
