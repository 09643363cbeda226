"""Requests protobuf cannot decode are a 400 naming the problem, not the decoder's 500.

Envoy transcodes what it can parse, but the service's decoder is stricter: a JSON body
nested past protobuf's depth limit, or a path segment that is not UTF-8, fails in grpc's
request deserialisation, before any servicer runs. The handlers here let those requests
through as a marker, and answer them with INVALID_ARGUMENT."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from flowport.errors import InvalidArgument
from flowport.metrics import GrpcCall, Metrics
from flowport.server.status import abort
from flowport.tracing import traced_streaming, traced_unary

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

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


def _unary(
    behavior: Callable[..., Awaitable[Any]], figures: GrpcCall | None
) -> Callable[..., Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if figures is not None:
            figures.started()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
        try:
            if isinstance(request, _Undecodable):
                await abort(context, InvalidArgument(UNDECODABLE))
            answer = await behavior(request, context)
            if figures is not None:
                code = context.code() or grpc.StatusCode.OK
            return answer
        except grpc.aio.AbortError:
            if figures is not None:
                code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if figures is not None:
                figures.handled(code, time.perf_counter() - started)

    return handle


def _streaming(
    behavior: Callable[..., AsyncIterator[Any]], figures: GrpcCall | None
) -> Callable[..., AsyncIterator[Any]]:
    # grpc.aio treats a handler as streaming only if it is an async generator function, so
    # this delegates message by message (about a microsecond each).
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if figures is not None:
            figures.started()
            started = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
        try:
            if isinstance(request, _Undecodable):
                await abort(context, InvalidArgument(UNDECODABLE))
            async for message in behavior(request, context):
                yield message
            if figures is not None:
                code = context.code() or grpc.StatusCode.OK
        except grpc.aio.AbortError:
            if figures is not None:
                code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if figures is not None:
                figures.handled(code, time.perf_counter() - started)

    return handle


class LenientHandlers(grpc.GenericRpcHandler):
    """The service's method handlers, each wrapped once, found by method name.

    The generated `add_*Servicer_to_server` functions register through this instead of the
    server; `create_server` then adds it to the server as one generic handler. Not a server
    interceptor: grpc.aio awaits an interceptor's coroutine on every call, a cost on every
    blocking run for a lookup that never changes. For the same reason the gRPC server
    metrics (grpc_server_*) are counted here, in the one wrapper each method has."""

    def __init__(self, metrics: Metrics | None = None, tracer: Tracer | None = None) -> None:
        self._metrics = metrics
        self._tracer = tracer
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._unnamed: list[object] = []

    def add_generic_rpc_handlers(self, generic_handlers: tuple[object, ...]) -> None:
        # The generated code passes the same handlers again, by name, to the method below.
        self._unnamed.extend(generic_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in method_handlers.items():
            method = f"/{service_name}/{name}"
            figures = None
            if self._metrics is not None:
                figures = self._metrics.grpc_call(method, streaming=handler.response_streaming)
            self._handlers[method] = _wrapped(handler, figures, self._tracer, method)
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


def _wrapped(
    handler: grpc.RpcMethodHandler, figures: GrpcCall | None, tracer: Tracer | None, method: str
) -> grpc.RpcMethodHandler:
    if handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserializer = _lenient(handler.request_deserializer)
    if handler.response_streaming:
        behavior = handler.unary_stream
        if tracer is not None:
            # Inside the metrics' wrapper: a span per call only when traces are on.
            behavior = traced_streaming(behavior, tracer, method)
        return grpc.unary_stream_rpc_method_handler(
            _streaming(behavior, figures),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    behavior = handler.unary_unary
    if tracer is not None:
        behavior = traced_unary(behavior, tracer, method)
    return grpc.unary_unary_rpc_method_handler(
        _unary(behavior, figures),
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )
