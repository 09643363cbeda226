"""Requests protobuf cannot decode are a 400 naming the problem, not the decoder's 500.

Envoy transcodes what it can parse, but the service's decoder is stricter: a JSON body
nested past protobuf's depth limit, or a path segment that is not UTF-8, fails in grpc's
request deserialisation, before any servicer runs. The handlers here let those requests
through as a marker, and answer them with INVALID_ARGUMENT."""

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


class CallsInFlight:
    """How many calls of the service's methods are being handled now; their handlers count."""

    def __init__(self) -> None:
        self.count = 0


def _unary(
    behavior: Callable[..., Awaitable[Any]], in_flight: CallsInFlight
) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        in_flight.count += 1
        try:
            if isinstance(request, _Undecodable):
                await abort(context, InvalidArgument(UNDECODABLE))
            return await behavior(request, context)
        finally:
            in_flight.count -= 1

    return handle


def _streaming(
    behavior: Callable[..., AsyncIterator[Any]], in_flight: CallsInFlight
) -> Callable[..., AsyncIterator[Any]]:
    # grpc.aio treats a handler as streaming only if it is an async generator function, so
    # this delegates message by message (about a microsecond each).
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        in_flight.count += 1
        try:
            if isinstance(request, _Undecodable):
                await abort(context, InvalidArgument(UNDECODABLE))
            async for message in behavior(request, context):
                yield message
        finally:
            in_flight.count -= 1

    return handle


class LenientHandlers(grpc.GenericRpcHandler):
    """The service's method handlers, each wrapped once, found by method name.

    The generated `add_*Servicer_to_server` functions register through this instead of the
    server; `create_server` then adds it to the server as one generic handler. Not a server
    interceptor: grpc.aio awaits an interceptor's coroutine on every call, which cost ~3 %
    of a blocking run's CPU behind Envoy for a lookup that never changes. The wrapped
    handlers also count the calls `in_flight`."""

    def __init__(self) -> None:
        self.in_flight = CallsInFlight()
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._unnamed: list[object] = []

    def add_generic_rpc_handlers(self, generic_handlers: tuple[object, ...]) -> None:
        # The generated code passes the same handlers again, by name, to the method below.
        self._unnamed.extend(generic_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in method_handlers.items():
            self._handlers[f"/{service_name}/{name}"] = _wrapped(handler, self.in_flight)
        if self._unnamed:
            self._unnamed.pop()

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    def install(self, server: grpc.aio.Server) -> None:
        """Adds the handlers to `server`; a service registered without its methods' names
        (generated code older than grpcio-tools 1.62) would be served by no one."""
        if self._unnamed or not self._handlers:
            raise RuntimeError("a service was registered without its method handlers by name")
        server.add_generic_rpc_handlers((self,))


def _wrapped(handler: grpc.RpcMethodHandler, in_flight: CallsInFlight) -> grpc.RpcMethodHandler:
    if handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserializer = _lenient(handler.request_deserializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, in_flight),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        _unary(handler.unary_unary, in_flight),
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )
