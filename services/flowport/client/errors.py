"""The error every non-2xx answer becomes, whatever route gave it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class FlowportError(Exception):
    """A call Flowport answered with an error.

    `status` is the HTTP status; `code` the body's `code` (the same number on every route
    this client calls); `reason` the stable `google.rpc.ErrorInfo` reason
    (`RATE_LIMITED`, `NOT_FOUND`, ...) where the answer carries details (management and
    run-record routes; FlowAI's route answers `{"code", "message"}` only, so None there);
    `retry_after` the seconds of a `Retry-After` header; `run_id` the run the call had
    started, when it had started one (its `x-run-id`).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int | None = None,
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
        run_id: str | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.code = status if code is None else code
        self.message = message
        self.reason = reason
        self.details = details or []
        self.retry_after = retry_after
        self.run_id = run_id

    @classmethod
    def from_response(cls, response: httpx.Response) -> FlowportError:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            # Envoy's own answers (an unknown route, no service serving) may be plain text.
            text = response.content.decode("utf-8", "replace").strip()
            return cls(
                response.status_code,
                text or response.reason_phrase,
                retry_after=retry_after_s(response),
                run_id=response.headers.get("x-run-id"),
            )
        details = [d for d in body.get("details") or [] if isinstance(d, dict)]
        reason = next(
            (d.get("reason") for d in details if str(d.get("@type", "")).endswith("ErrorInfo")),
            None,
        )
        code = body.get("code")
        return cls(
            response.status_code,
            str(body.get("message", "")),
            code=code if isinstance(code, int) else None,
            reason=reason,
            details=details,
            retry_after=retry_after_s(response),
            run_id=response.headers.get("x-run-id"),
        )


def retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds: Flowport sends whole seconds; an HTTP date is read too."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
