"""The one table of error statuses: for each kind of domain error, what every surface answers.

Every surface reads it: FlowAI's route (its status, body and SSE error frames), LinkAI's
envelope, the typed RPCs (their gRPC status, RunStream's RunError code, and their REST form
through Envoy) and the management calls. docs/api.md (Errors) shows the same table; a test keeps
the two equal.

gRPC codes are named as google.rpc.Code, the code space grpc.StatusCode mirrors and the one
google.rpc.Status carries: this module is read by the wire formats (flowai.py, linkai.py),
which have no business loading grpc.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.rpc.code_pb2 import Code

from flowport.errors import (
    Cancelled,
    ContentBlocked,
    CreditsExhausted,
    DeadlineExceeded,
    FlowportError,
    IdempotencyKeyReused,
    InvalidArgument,
    KeyExpired,
    MissingScope,
    NotFound,
    OriginNotAllowed,
    PermissionDenied,
    QueueFull,
    RateLimited,
    RunEnded,
    SubWorkflowNotFound,
    Unauthenticated,
    Unavailable,
    UpstreamFailed,
    VersionNotFound,
    WorkflowNotAllowed,
)


@dataclass(frozen=True, slots=True)
class Statuses:
    """What one kind of error is on each surface."""

    # The gRPC status code of the typed RPCs and the management calls.
    grpc: Code
    # Every REST answer: FlowAI's route, the typed and management routes, the `code` of SSE
    # error frames and of RunStream's RunError events.
    rest: int
    # LinkAI's code, which is also the HTTP status of its answer (LinkAI's documented table).
    linkai: int
    # google.rpc.ErrorInfo's reason on the typed and management calls: stable, for clients
    # to branch on.
    reason: str


# fmt: off
# One kind a line, so the table reads as a table. A kind missing here answers as its nearest
# base class; FlowportError itself is the service failing (LinkAI: "anything else, 503").
# REST choices the HTTP standard leaves open: 402 Payment Required for used-up credits, 499
# (nginx's "client closed request", which Envoy's stats use too) for a cancelled run, 502 for
# an upstream that failed against 503 for one that is not there at all.
TABLE: dict[type[FlowportError], Statuses] = {
    # kind                        gRPC code                REST LinkAI ErrorInfo reason
    InvalidArgument:     Statuses(Code.INVALID_ARGUMENT,   400,  400,  "INVALID_ARGUMENT"),
    Unauthenticated:     Statuses(Code.UNAUTHENTICATED,    401,  401,  "UNAUTHENTICATED"),
    KeyExpired:          Statuses(Code.UNAUTHENTICATED,    401,  401,  "KEY_EXPIRED"),
    PermissionDenied:    Statuses(Code.PERMISSION_DENIED,  403,  403,  "PERMISSION_DENIED"),
    MissingScope:        Statuses(Code.PERMISSION_DENIED,  403,  408,  "SCOPE_MISSING"),
    WorkflowNotAllowed:  Statuses(Code.PERMISSION_DENIED,  403,  403,  "WORKFLOW_NOT_ALLOWED"),
    OriginNotAllowed:    Statuses(Code.PERMISSION_DENIED,  403,  403,  "ORIGIN_NOT_ALLOWED"),
    NotFound:            Statuses(Code.NOT_FOUND,          404,  402,  "NOT_FOUND"),
    VersionNotFound:     Statuses(Code.NOT_FOUND,          404,  402,  "VERSION_NOT_FOUND"),
    SubWorkflowNotFound: Statuses(Code.NOT_FOUND,          404,  503,  "SUB_WORKFLOW_NOT_FOUND"),
    CreditsExhausted:    Statuses(Code.RESOURCE_EXHAUSTED, 402,  406,  "CREDITS_EXHAUSTED"),
    ContentBlocked:      Statuses(Code.ABORTED,            409,  409,  "CONTENT_BLOCKED"),
    RateLimited:         Statuses(Code.RESOURCE_EXHAUSTED, 429,  429,  "RATE_LIMITED"),
    QueueFull:           Statuses(Code.RESOURCE_EXHAUSTED, 429,  429,  "QUEUE_FULL"),
    IdempotencyKeyReused: Statuses(Code.FAILED_PRECONDITION, 422, 422, "IDEMPOTENCY_KEY_REUSED"),
    UpstreamFailed:      Statuses(Code.UNAVAILABLE,        502,  503,  "UPSTREAM_FAILED"),
    Unavailable:         Statuses(Code.UNAVAILABLE,        503,  503,  "UNAVAILABLE"),
    DeadlineExceeded:    Statuses(Code.DEADLINE_EXCEEDED,  504,  503,  "DEADLINE_EXCEEDED"),
    RunEnded:            Statuses(Code.FAILED_PRECONDITION, 409, 409,  "RUN_ENDED"),
    Cancelled:           Statuses(Code.CANCELLED,          499,  503,  "CANCELLED"),
    FlowportError:       Statuses(Code.INTERNAL,           500,  503,  "INTERNAL"),
}
# fmt: on

# The error domain of every ErrorInfo: reasons are unique within it.
DOMAIN = "flowport"


def of(error: FlowportError) -> Statuses:
    """The statuses of the error's kind: its own class's row, else its nearest base's."""
    for kind in type(error).__mro__:
        statuses = TABLE.get(kind)
        if statuses is not None:
            return statuses
    raise LookupError(f"{type(error).__name__} is not a FlowportError")


# The kinds a run may end with, by their REST status: a run's record keeps that status only,
# and an answer given again from the record (a repeated Idempotency-Key) tells the same kind
# on every surface.
RUN_FAILURES: dict[int, type[FlowportError]] = {
    TABLE[kind].rest: kind
    for kind in (
        InvalidArgument,
        SubWorkflowNotFound,
        ContentBlocked,
        UpstreamFailed,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
    )
}


def recorded_failure(rest: int | None, message: str, node_id: str | None) -> FlowportError:
    """The error a run failed with, from the REST status and message on its record."""
    kind = RUN_FAILURES.get(rest or 500, FlowportError)
    return kind(message, node_id=node_id)
