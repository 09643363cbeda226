"""Domain errors as gRPC statuses, with the codes of flowport.statuses' table.

A call Envoy transcoded from REST (its Lua filter marks it `x-flowport-surface: rest`) gets
the same status, with a google.rpc.Status in it that carries the table's REST status as its
`code`, because Envoy prints that Status as the REST body; and an `x-http-status` trailer,
which the Lua filter makes the response's status in place of Envoy's fixed gRPC-to-HTTP
map. That works because an error before any message is a trailers-only response: its
trailers are the response's headers, which the transcoder passes on to the Lua filter (tried
with Envoy 1.40, unary and server-streaming, HTTP/1.1 and HTTP/2). Trailers after a message
are no headers: there Envoy's map would apply, but a run's failures after its first event are
RunError events, not statuses. (The header sent as initial metadata before the error sets the
status too, but then a server-streaming route's grpc-status trailers reach HTTP/2 clients.)
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import status_pb2

from flowport import errors, statuses

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error"

# google.rpc.Code (the table's) to the grpc.StatusCode with the same number.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


def is_rest(context: grpc.aio.ServicerContext) -> bool:
    """True when Envoy transcoded the call from REST/JSON (its Lua filter marks those)."""
    return any(
        name == "x-flowport-surface" and value == "rest"
        for name, value in context.invocation_metadata() or ()
    )


def error_headers(error: errors.FlowportError) -> tuple[tuple[str, str], ...]:
    """Headers an error answer carries besides its body: `retry-after` when rate limited."""
    if isinstance(error, errors.RateLimited):
        return (("retry-after", str(error.retry_after_s)),)
    return ()


async def abort(context: grpc.aio.ServicerContext, error: errors.FlowportError) -> NoReturn:
    row = statuses.of(error)
    trailing: tuple[tuple[str, str | bytes], ...] = error_headers(error)
    if is_rest(context):
        detail = status_pb2.Status(code=row.rest, message=error.message)
        trailing += (
            ("grpc-status-details-bin", detail.SerializeToString()),
            ("x-http-status", str(row.rest)),
        )
    await context.abort(_GRPC_CODES[row.grpc], error.message, trailing_metadata=trailing)
    raise AssertionError("unreachable: abort raises")


def as_flowport_error(error: Exception) -> errors.FlowportError:
    """Domain errors as they are; anything else becomes a logged, message-free 500."""
    return error if isinstance(error, errors.FlowportError) else internal(error)


def internal(error: BaseException) -> errors.FlowportError:
    """Unexpected exceptions are logged with their traceback and reach clients as the service
    failing, with no internals in the message."""
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
