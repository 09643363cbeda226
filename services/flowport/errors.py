"""Domain errors: storage, engine and auth raise these; only the servicers translate them."""

from __future__ import annotations


class FlowportError(Exception):
    """Base of every error a client may see. `http_status` is what the REST surfaces answer."""

    http_status = 500

    def __init__(self, message: str, *, node_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The node that failed, when the error happened inside a run.
        self.node_id = node_id


class InvalidArgument(FlowportError):
    """A malformed body, an invalid definition or a bad input; the message names the field."""

    http_status = 400


class Unauthenticated(FlowportError):
    """A missing, unknown or revoked key."""

    http_status = 401


class PermissionDenied(FlowportError):
    """A valid key that may not do this (scope or ownership)."""

    http_status = 403


class MissingScope(PermissionDenied):
    """A valid key without the scope this call needs (LinkAI answers 408 for the run scope)."""


class NotFound(FlowportError):
    http_status = 404


class CreditsExhausted(FlowportError):
    """The calling account has no run credits left (LinkAI answers 406)."""

    # Payment Required: the closest HTTP meaning on the surfaces that are not LinkAI's.
    http_status = 402


class ContentBlocked(FlowportError):
    """An input or output contains a word of the content policy."""

    http_status = 409


class Conflict(FlowportError):
    http_status = 409


class ResourceExhausted(FlowportError):
    """Rate limited; `retry_after_s` tells the client when to try again."""

    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamFailed(FlowportError):
    """An upstream the run depends on (the LLM provider) failed or timed out."""

    http_status = 502


class DeadlineExceeded(FlowportError):
    """A run took longer than its workflow's `timeout_s`."""

    http_status = 504


class Unavailable(FlowportError):
    """The service cannot do this now: a provider is not configured, or it is shutting down."""

    http_status = 503


class Cancelled(FlowportError):
    """The run was cancelled, by the client leaving or by a cancel call."""

    # 499 is the de-facto code for "client closed request" (nginx, Envoy's stats).
    http_status = 499
