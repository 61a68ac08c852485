"""Putting an async context around every gRPC method handler.

Interceptors in grpc.aio see a method before its handler runs, but not the
call itself; to act around the call (set who is calling, map errors, time
it) the handler's behaviour is wrapped, whichever of the four shapes it has
and whether it streams by `yield` or by `context.write`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]
else:  # the runtime class is not generic
    Handler = grpc.RpcMethodHandler
# Given the call's context and its request (an iterator for client streams).
Around = Callable[[aio.ServicerContext[Any, Any], Any], AbstractAsyncContextManager[None]]

_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def wrap(handler: Handler, around: Around) -> Handler:
    attribute, factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    behavior = getattr(handler, attribute)
    return factory(
        _wrap_behavior(behavior, around),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _wrap_behavior(behavior: Any, around: Around) -> Any:
    if inspect.isasyncgenfunction(behavior):

        async def stream(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            async with around(context, request):
                async for item in behavior(request, context):
                    yield item

        return stream

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        async with around(context, request):
            return await behavior(request, context)

    return call
