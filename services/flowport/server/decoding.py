"""Requests protobuf cannot decode are a 400 naming the problem, not the decoder's 500.

Envoy transcodes what it can parse, but the service's decoder is stricter: a JSON body
nested past protobuf's depth limit, or a path segment that is not UTF-8, fails in grpc's
request deserialisation, before any servicer runs. This interceptor lets those requests
through as a marker, and answers them with INVALID_ARGUMENT."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from flowport.errors import InvalidArgument
from flowport.server.status import abort

UNDECODABLE = (
    "the request could not be decoded: a JSON body nested too deeply, or text in the body "
    "or the path that is not valid UTF-8"
)


class _Undecodable:
    """Stands for a request its method's deserializer refused."""


def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _Undecodable()

    return decode


def _unary(behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            await abort(context, InvalidArgument(UNDECODABLE))
        return await behavior(request, context)

    return handle


def _streaming(behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    # grpc.aio treats a handler as streaming only if it is an async generator function, so
    # this delegates message by message (about a microsecond each).
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, _Undecodable):
            await abort(context, InvalidArgument(UNDECODABLE))
        async for message in behavior(request, context):
            yield message

    return handle


class UndecodableRequests(grpc.aio.ServerInterceptor):
    """Wraps each unary-request method's handler once; the wrapped handlers are cached."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        deserializer = _lenient(handler.request_deserializer)
        if handler.response_streaming:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        self._handlers[method] = wrapped
        return wrapped
