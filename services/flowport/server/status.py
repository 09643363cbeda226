"""Domain errors as rich gRPC statuses (grpcio-status), with the codes of flowport.statuses.

A native gRPC client gets the table's gRPC code, and a google.rpc.Status in the
`grpc-status-details-bin` trailer with details: ErrorInfo always, BadRequest when an
argument's field is known, RetryInfo when rate limited.

A call Envoy transcoded from REST (its Lua filter marks it `x-flowport-surface: rest`) gets
the same status, but the google.rpc.Status in it carries the table's REST status as its
`code`, because Envoy prints that Status as the REST body; and an `x-http-status` trailer,
which the Lua filter makes the response's status in place of Envoy's fixed gRPC-to-HTTP
map. That works because an error before any message is a trailers-only response: its
trailers are the response's headers, which the transcoder passes on to the Lua filter (tried
with Envoy 1.40, unary and server-streaming, HTTP/1.1 and HTTP/2). Trailers after a message
are no headers: there Envoy's map would apply, but a run's failures after its first event are
RunError events, not statuses. (The header sent as initial metadata before the error sets the
status too, but then a server-streaming route's grpc-status trailers reach HTTP/2 clients.)
Envoy prints the details only because their types are in its descriptor set (protos.py).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from flowport import errors, statuses

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error"
DETAILS_KEY = "grpc-status-details-bin"

Metadata = tuple[tuple[str, str | bytes], ...]

# google.rpc.Code (the table's) to the grpc.StatusCode with the same number.
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class _Status(grpc.Status):
    """What `abort_with_status` takes (grpc.Status is an interface; grpcio-status's own class
    is private), so trailers besides the details can go with it."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


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


def rich_status(error: errors.FlowportError, *, rest: bool) -> grpc.Status:
    """The status a typed RPC ends with for `error`, for a native or a transcoded caller."""
    row = statuses.of(error)
    details = [_packed(detail) for detail in _details(error, row)]
    if not rest:
        native = rpc_status.to_status(
            status_pb2.Status(code=row.grpc, message=error.message, details=details)
        )
        trailing = (*native.trailing_metadata, *error_headers(error))
        return _Status(native.code, native.details, trailing)
    body = status_pb2.Status(code=row.rest, message=error.message, details=details)
    trailing = (
        (DETAILS_KEY, body.SerializeToString()),
        ("x-http-status", str(row.rest)),
        *error_headers(error),
    )
    return _Status(_GRPC_CODES[row.grpc], error.message, trailing)


def _details(error: errors.FlowportError, row: statuses.Statuses) -> list[Message]:
    metadata = {} if error.node_id is None else {"node_id": error.node_id}
    details: list[Message] = [
        error_details_pb2.ErrorInfo(reason=row.reason, domain=statuses.DOMAIN, metadata=metadata)
    ]
    if isinstance(error, errors.InvalidArgument) and error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message.removeprefix(f"{error.field}: ")
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if isinstance(error, errors.RateLimited):
        delay = duration_pb2.Duration(seconds=error.retry_after_s)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return details


def _packed(detail: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)
    return packed


async def abort(context: grpc.aio.ServicerContext, error: errors.FlowportError) -> NoReturn:
    await context.abort_with_status(rich_status(error, rest=is_rest(context)))
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
