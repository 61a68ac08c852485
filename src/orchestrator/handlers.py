"""Putting an async context around every gRPC method handler.

Interceptors in grpc.aio see a method before its handler runs, but not the
call itself; to act around the call (set who is calling, map errors, time
it) the handler's behaviour is wrapped, whichever of the four shapes it has
and whether it streams by `yield` or by `context.write`.

grpc.aio also parses the request before anything of ours runs, and a
deserializer that raises becomes UNKNOWN; `wrap(..., decode=...)` replaces
the deserializer with one that returns the exception refusing a request
instead, and raises it inside the call, within `around`.
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
# Raw request bytes to the request, or to the exception that refuses them.
Decode = Callable[[bytes], Any]

_FACTORIES = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def wrap(handler: Handler, around: Around, decode: Decode | None = None) -> Handler:
    attribute, factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    behavior = getattr(handler, attribute)
    deserializer = handler.request_deserializer
    if decode is not None:
        behavior = _refusing(behavior, handler.request_streaming)
        deserializer = decode
    return factory(
        _wrap_behavior(behavior, around),
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )


def _refusing(behavior: Any, request_streaming: bool) -> Any:
    """`behavior`, raising the exception a request decoded to. A client
    stream ends at such a message (what came before it is served), and the
    call fails with it once the behaviour has finished."""

    def admit(request: Any) -> tuple[Any, Callable[[], None]]:
        if request_streaming:
            admitted = _Admitted(request)
            return admitted, admitted.check
        if isinstance(request, Exception):
            raise request
        return request, _nothing

    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            admitted, check = admit(request)
            try:
                async for item in behavior(admitted, context):
                    yield item
            except Exception:
                check()  # ending the client stream may be what made the behaviour fail
                raise
            check()

        return stream

    async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        admitted, check = admit(request)
        try:
            result = await behavior(admitted, context)
        except Exception:
            check()
            raise
        check()
        return result

    return call


def _nothing() -> None:
    pass


class _Admitted:
    """A client stream up to its first refused message."""

    def __init__(self, requests: AsyncIterator[Any]) -> None:
        self._requests = requests
        self._refusal: Exception | None = None

    def __aiter__(self) -> _Admitted:
        return self

    async def __anext__(self) -> Any:
        if self._refusal is not None:
            raise StopAsyncIteration
        request = await anext(self._requests)
        if isinstance(request, Exception):
            self._refusal = request
            raise StopAsyncIteration
        return request

    def check(self) -> None:
        if self._refusal is not None:
            raise self._refusal


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
