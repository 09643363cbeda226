"""Domain errors: storage, engine and auth raise these; flowport.statuses says what each surface
answers for each kind."""

from __future__ import annotations


class FlowportError(Exception):
    """Base of every error a client may see; raised as itself, a failure of the service (a
    node that broke, a bug)."""

    def __init__(self, message: str, *, node_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # The node that failed, when the error happened inside a run.
        self.node_id = node_id


class InvalidArgument(FlowportError):
    """A malformed body, an invalid definition or a bad input; the message names the field."""

    def __init__(
        self, message: str, *, field: str | None = None, node_id: str | None = None
    ) -> None:
        super().__init__(message, node_id=node_id)
        # The request field at fault (`input.weight`), when one is: gRPC clients get it apart.
        self.field = field

    @classmethod
    def at(cls, field: str, problem: str) -> InvalidArgument:
        """`<field>: <problem>`, the message every surface shows, with the field kept apart."""
        return cls(f"{field}: {problem}", field=field)


class Unauthenticated(FlowportError):
    """A missing, unknown or revoked key."""


class KeyExpired(Unauthenticated):
    """A key past its `expires_at`."""


class PermissionDenied(FlowportError):
    """A valid key that may not do this: the workflow is private to another account."""


class MissingScope(PermissionDenied):
    """A valid key without the scope this call needs."""


class WorkflowNotAllowed(PermissionDenied):
    """A key limited to some workflows, used on another: whether that one exists is not
    told."""


class OriginNotAllowed(PermissionDenied):
    """A browser's cross-origin call from an origin its key's account does not allow."""


class NotFound(FlowportError):
    """No such workflow, run or key (another account's are not found either)."""


class VersionNotFound(NotFound):
    """A run pinned a version or alias the workflow does not have; told only to callers who
    may run the workflow."""


class SubWorkflowNotFound(NotFound):
    """A workflow node's workflow is not published, or not its account's: the run fails, which is
    not the caller naming an unknown workflow."""


class CreditsExhausted(FlowportError):
    """The calling account has no run credits left."""


class ContentBlocked(FlowportError):
    """An input or output contains a word of the content policy."""


class RateLimited(FlowportError):
    """The key made more calls than its rate limit; `retry_after_s` tells when to try again."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamFailed(FlowportError):
    """An upstream the run depends on (the LLM provider, an http node's API) failed or timed out."""


class DeadlineExceeded(FlowportError):
    """A run took longer than its workflow's `timeout_s`."""


class Unavailable(FlowportError):
    """A part the run needs is not there: the LLM provider is not configured (in a bare
    engine, the workflow loader), or the replica executing the run stopped."""


class IdempotencyKeyReused(FlowportError):
    """An Idempotency-Key came again with another body than its first call's."""


class QueueFull(FlowportError):
    """The account has as many background runs waiting as it may."""


class RunEnded(FlowportError):
    """A cancel call came for a run that had already ended; the message says how."""


class Cancelled(FlowportError):
    """The run was cancelled, by the client leaving or by a cancel call."""
