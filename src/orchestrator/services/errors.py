"""The one place where exceptions become gRPC status, and failed calls are
logged (method, code, duration)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc import aio

from orchestrator import handlers
from orchestrator.errors import Internal, InvalidArgument, OrchestratorError, Unimplemented
from orchestrator.handlers import Handler
from orchestrator.status import to_status

log = logging.getLogger("orchestrator.rpc")


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
        return handlers.wrap(handler, lambda context, request: _mapped(method, context, request))


@contextlib.asynccontextmanager
async def _mapped(
    method: str, context: aio.ServicerContext[Any, Any], request: Any
) -> AsyncIterator[None]:
    started = time.monotonic()
    try:
        if isinstance(request, Message):
            _refuse_nul(request)
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


_FREE_FORM = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)


def _refuse_nul(message: Message, path: str = "") -> None:
    """No text field may hold a NUL character: PostgreSQL cannot store one,
    and no name, id or title needs it. (Free-form JSON is stored as JSON,
    where it is escaped, so Struct values are left alone.)"""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            texts = value if _repeated(field) else [value]
            if any("\x00" in text for text in texts):
                raise InvalidArgument.field(name, "must not contain NUL characters")
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            if field.message_type.full_name in _FREE_FORM:
                continue
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if "\x00" in key or (isinstance(item, str) and "\x00" in item):
                        raise InvalidArgument.field(name, "must not contain NUL characters")
                continue
            children = value if _repeated(field) else [value]
            for index, child in enumerate(children):
                _refuse_nul(child, f"{name}[{index}]." if _repeated(field) else f"{name}.")


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


async def _abort(
    context: aio.ServicerContext[Any, Any],
    method: str,
    started: float,
    error: OrchestratorError,
) -> None:
    log.info(
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
