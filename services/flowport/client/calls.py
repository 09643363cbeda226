"""What the sync and async clients share: each call's request, and reading its answer."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import httpx_sse

from flowport.client.errors import FlowportError
from flowport.client.models import Event, RunResult, parse_event
from flowport.client.retries import idempotency_headers

DEFAULT_URL = "http://127.0.0.1:8080"
# A blocking run may be as long as Envoy lets a quiet request be (300 s).
DEFAULT_TIMEOUT = httpx.Timeout(310.0, connect=10.0)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # A repeat is harmless although the method is POST (cancelling a run).
    safe: bool = False


def base_url_and_key(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """The arguments, else FLOWPORT_URL and FLOWPORT_KEY."""
    url = base_url or os.environ.get("FLOWPORT_URL") or DEFAULT_URL
    key = api_key or os.environ.get("FLOWPORT_KEY")
    if not key:
        raise ValueError("an API key is needed: pass api_key= or set FLOWPORT_KEY")
    return url.rstrip("/"), key


def segment(value: str) -> str:
    return quote(value, safe="")


def run_call(
    workflow_id: str,
    input: dict[str, Any] | None,
    *,
    mode: str,
    session_id: str | None,
    webhook_url: str | None,
    idempotency_key: str | None,
    idempotent: bool,
) -> Call:
    """FlowAI's route, in one of its modes: "blocking", "stream" or "async"."""
    body: dict[str, Any] = {"input": input or {}}
    if mode != "blocking":
        body["mode"] = mode
    if session_id is not None:
        body["session_id"] = session_id
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    return Call(
        "POST",
        f"/v1/api/workflow/run/{segment(workflow_id)}",
        body,
        idempotency_headers(idempotency_key, idempotent),
    )


def run_result(response: httpx.Response) -> RunResult:
    return RunResult.model_validate(
        {**response.json(), "session_id": response.headers.get("x-session-id")}
    )


def events_call(run_id: str, after: int | None) -> Call:
    headers = {} if not after else {"Last-Event-ID": str(after)}
    return Call("GET", f"/v1/runs/{segment(run_id)}/events", headers=headers)


def get_run_call(run_id: str) -> Call:
    return Call("GET", f"/v1/runs/{segment(run_id)}")


def cancel_call(run_id: str) -> Call:
    # Cancelling twice changes nothing more: a repeat whose first try got through is 409
    # "the run already cancelled", which says what happened.
    return Call("POST", f"/v1/runs/{segment(run_id)}:cancel", {}, safe=True)


def create_key_call(
    name: str,
    scopes: list[str] | None,
    expires_at: datetime | str | None,
    workflows: list[str] | None,
) -> Call:
    body: dict[str, Any] = {"name": name}
    if scopes is not None:
        body["scopes"] = scopes
    if expires_at is not None:
        body["expires_at"] = (
            expires_at.isoformat() if isinstance(expires_at, datetime) else expires_at
        )
    if workflows is not None:
        body["workflows"] = workflows
    return Call("POST", "/v1/keys", body)


def rotate_key_call(key_id: str, grace_s: int | None) -> Call:
    return Call(
        "POST",
        f"/v1/keys/{segment(key_id)}:rotate",
        {} if grace_s is None else {"grace_s": grace_s},
    )


def frame_event(sse: httpx_sse.ServerSentEvent, last_id: int) -> Event | None:
    """The typed event of a dispatched SSE frame, numbered; None for what the standard does
    not dispatch (httpx-sse makes an empty event of a `: ping` comment once an id was seen).
    Frames without an `id:` line (FlowAI's own stream) are numbered by counting."""
    if not sse.data and sse.event == "message":
        return None
    return parse_event(sse.event, sse.data, int(sse.id) if sse.id else last_id + 1)


def raise_for_status(response: httpx.Response) -> None:
    if response.is_error:
        raise FlowportError.from_response(response)
