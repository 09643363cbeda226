"""The one place where domain errors become gRPC statuses and REST error bodies."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import status_pb2

from flowport import errors

log = logging.getLogger(__name__)

GRPC_CODES: dict[type[errors.FlowportError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UpstreamFailed: grpc.StatusCode.UNAVAILABLE,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    # Quota, as gRPC defines RESOURCE_EXHAUSTED; FlowAI's route answers 402, LinkAI's 406.
    errors.CreditsExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # ABORTED is the code Envoy answers 409 for, the status both REST surfaces use.
    errors.ContentBlocked: grpc.StatusCode.ABORTED,
}

# The HTTP status Envoy's transcoder answers for each gRPC code (its fixed table).
ENVOY_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

INTERNAL_MESSAGE = "internal error"


def grpc_code(error: errors.FlowportError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        code = GRPC_CODES.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def is_rest(context: grpc.aio.ServicerContext) -> bool:
    """True when Envoy transcoded the call from REST/JSON (its Lua filter marks those)."""
    return any(
        name == "x-flowport-surface" and value == "rest"
        for name, value in context.invocation_metadata() or ()
    )


def error_json(status: int, message: str) -> bytes:
    """The REST error body of API.md: {"code": <http status>, "message": "..."}."""
    return json.dumps({"code": status, "message": message}, ensure_ascii=False).encode()


def error_headers(error: errors.FlowportError) -> tuple[tuple[str, str], ...]:
    """Headers an error answer carries besides its body: `retry-after` when rate limited."""
    if isinstance(error, errors.ResourceExhausted):
        return (("retry-after", str(error.retry_after_s)),)
    return ()


async def abort(context: grpc.aio.ServicerContext, error: errors.FlowportError) -> NoReturn:
    code = grpc_code(error)
    trailing: tuple[tuple[str, str | bytes], ...] = error_headers(error)
    if is_rest(context):
        # Envoy prints this Status as the body: `code` is the HTTP status REST clients see,
        # as API.md's error body asks. Native gRPC clients get the plain status instead.
        detail = status_pb2.Status(code=ENVOY_HTTP_STATUS.get(code, 500), message=error.message)
        trailing += (("grpc-status-details-bin", detail.SerializeToString()),)
    await context.abort(code, error.message, trailing_metadata=trailing)
    raise AssertionError("unreachable: abort raises")


def as_flowport_error(error: Exception) -> errors.FlowportError:
    """Domain errors as they are; anything else becomes a logged, message-free 500."""
    return error if isinstance(error, errors.FlowportError) else internal(error)


def internal(error: BaseException) -> errors.FlowportError:
    """Unexpected exceptions are logged with their traceback and reach clients as 500
    with no internals in the message."""
    log.error("unhandled error", exc_info=error)
    return errors.FlowportError(INTERNAL_MESSAGE)


Handler = TypeVar("Handler", bound=Callable[..., Any])


def translate_errors(handler: Handler) -> Handler:
    """Wraps a servicer method (unary or server-streaming) so domain errors become statuses."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream(
            self: Any, request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                async for message in handler(self, request, context):
                    yield message
            except errors.FlowportError as error:
                await abort(context, error)
            except Exception as error:
                # The boundary: an unexpected error reaches the client without its internals.
                await abort(context, internal(error))

        return stream  # type: ignore[return-value]

    @functools.wraps(handler)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except errors.FlowportError as error:
            await abort(context, error)
        except Exception as error:
            # The boundary: an unexpected error reaches the client without its internals.
            await abort(context, internal(error))

    return unary  # type: ignore[return-value]
