"""When a call is tried again, and how long the client waits first (tenacity does the
retrying)."""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry_if_exception,
    retry_if_result,
    retry_never,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from flowport.client.errors import retry_after_s

log = logging.getLogger("flowport.client")

# Methods whose repeat changes nothing the first call did not.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True)
class RetryPolicy:
    """How a call that may be repeated is retried.

    `max_attempts` counts the first one. 502, 503 and connection errors wait
    `backoff_s` × 2^(n-1), at most `max_backoff_s`, plus up to `backoff_s` drawn at random
    (so that many clients do not come back at once). A 429 waits its `Retry-After` plus
    that random part; one asking for more than `max_retry_after_s` is raised at once.
    """

    max_attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 60.0

    def tenacity_kwargs(self, repeatable: bool) -> dict[str, Any]:
        """Arguments for tenacity's Retrying or AsyncRetrying around one send: the last
        answer (a response or an exception) comes out as it is when no retry is left."""
        backoff = wait_exponential(multiplier=self.backoff_s, max=self.max_backoff_s) + wait_random(
            0, self.backoff_s
        )

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                after = retry_after_s(outcome.result())
                if after is not None:
                    return after + random.uniform(0, self.backoff_s)
            return float(backoff(state))

        def transient(response: httpx.Response) -> bool:
            if response.status_code == 429:
                # Without Retry-After (the account's queue of background runs is full) the
                # wait is not the client's to guess.
                after = retry_after_s(response)
                return after is not None and after <= self.max_retry_after_s
            # A run's own failure (it carries the run's id) would only be answered again.
            return response.status_code in (502, 503) and "x-run-id" not in response.headers

        return {
            "stop": stop_after_attempt(self.max_attempts),
            "wait": wait,
            "retry": (
                retry_if_exception(lambda error: isinstance(error, httpx.TransportError))
                | retry_if_result(transient)
                if repeatable
                else retry_never
            ),
            "retry_error_callback": lambda state: state.outcome.result(),  # type: ignore[union-attr]
            "before_sleep": _log_retry,
        }


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    if outcome is None:
        return
    what = repr(outcome.exception()) if outcome.failed else f"HTTP {outcome.result().status_code}"
    log.info(
        "retrying after %s (attempt %d), in %.2f s",
        what,
        state.attempt_number,
        state.upcoming_sleep,
    )


def idempotency_headers(idempotency_key: str | None, idempotent: bool) -> dict[str, str]:
    """The Idempotency-Key of a run call: the caller's, or a new one for `idempotent`."""
    if idempotency_key is None and idempotent:
        idempotency_key = str(uuid.uuid4())
    return {} if idempotency_key is None else {IDEMPOTENCY_KEY: idempotency_key}


def repeatable(method: str, headers: dict[str, str], safe: bool) -> bool:
    """A call is tried again only when its repeat cannot do anything twice: a safe method,
    a call marked safe (cancelling), or a run call under an Idempotency-Key."""
    return safe or method in SAFE_METHODS or IDEMPOTENCY_KEY in headers
