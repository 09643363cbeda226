"""FlowAI's workflow API, byte for byte: its request body, SSE frames and JSON answers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flowport.engine import (
    NodeFinished,
    NodeStarted,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
    Token,
)
from flowport.errors import FlowportError, InvalidArgument

BODY_FIELDS = ("input", "stream", "session_id")


@dataclass(frozen=True, slots=True)
class FlowAiRequest:
    input: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    session_id: str | None = None


def parse_request(body: bytes) -> FlowAiRequest:
    """`{"input": {...}, "stream": true, "session_id": "..."}`; every problem is a 400 naming it."""
    if not body.strip():
        return FlowAiRequest()
    try:
        # JSON on the wire is UTF-8 (RFC 8259); json.loads would guess other encodings.
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("body: not valid UTF-8") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise InvalidArgument(f"body: not valid JSON ({_short(error)})") from None
    if not isinstance(data, dict):
        raise InvalidArgument('body: must be a JSON object such as {"input": {...}}')
    unknown = sorted(set(data) - set(BODY_FIELDS))
    if unknown:
        raise InvalidArgument(f"{unknown[0]}: unknown field (known: {', '.join(BODY_FIELDS)})")
    raw_input = data.get("input", {})
    if raw_input is None:
        raw_input = {}
    if not isinstance(raw_input, dict):
        raise InvalidArgument("input: must be a JSON object")
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidArgument("stream: must be true or false")
    session_id = data.get("session_id")
    if session_id is not None and (not isinstance(session_id, str) or len(session_id) > 128):
        raise InvalidArgument("session_id: must be a string of at most 128 characters")
    return FlowAiRequest(input=raw_input, stream=stream, session_id=session_id or None)


def dumps(value: Any) -> bytes:
    """Compact JSON with readable non-ASCII text, as FlowAI writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def frame(event: str, payload: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(payload) + b"\n\n"


def render_event(event: RunEvent) -> bytes | None:
    """One SSE frame for an engine event; None for events FlowAI does not show."""
    match event:
        case RunStarted():
            return frame(
                "msg",
                {"Node": event.node_id, "Msg": "start", "Type": "start", "Data": event.inputs},
            )
        case NodeStarted():
            message = f"Start node {event.name}, type {event.type}"
            return frame(
                "msg", {"Node": event.node_id, "Msg": message, "Type": "start_node", "Data": None}
            )
        case NodeFinished() if event.status == "succeeded":
            message = f"Finish node {event.name}, type {event.type}"
            data = {"time_spend": event.time_spend}
            return frame(
                "msg", {"Node": event.node_id, "Msg": message, "Type": "finish_node", "Data": data}
            )
        case Token():
            return frame(
                "stream",
                {"Content": event.content, "Node": event.node_id, "Reasoning": event.reasoning},
            )
        case RunSucceeded():
            return frame("output", output_payload(event))
        case RunFailed():
            return error_frame(event.error, node_id=event.node_id)
    # A failed node's finish is told by the error frame that follows it.
    return None


def error_frame(error: FlowportError, *, node_id: str | None = None) -> bytes:
    return frame(
        "error",
        {"Node": node_id or error.node_id, "code": error.http_status, "message": error.message},
    )


def output_payload(result: RunSucceeded) -> dict[str, Any]:
    return {"output": result.output, "total_time": result.total_time, "run_id": result.run_id}


def error_body(error: FlowportError) -> bytes:
    return dumps({"code": error.http_status, "message": error.message})


def _short(error: Exception) -> str:
    return str(error).split("\n", 1)[0][:200]
