"""FlowAI's workflow API, byte for byte: its request body, SSE frames and JSON answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowport import jsonbody, statuses
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
from flowport.jsonbody import Pin, dumps
from flowport.modes import MODES, Mode

BODY_FIELDS = ("input", "stream", "session_id", "mode", "webhook_url", "version")


@dataclass(frozen=True, slots=True)
class FlowAiRequest:
    input: dict[str, Any] = field(default_factory=dict)
    # blocking (FlowAI's default), stream (`"stream": true`) or async (a background run).
    mode: Mode = "blocking"
    session_id: str | None = None
    webhook_url: str | None = None
    # The version number or alias the call pins; None runs the newest.
    version: Pin = None

    @property
    def stream(self) -> bool:
        return self.mode == "stream"


def parse_request(body: bytes) -> FlowAiRequest:
    """`{"input": {...}, "stream": true, "session_id": "..."}`, and Flowport's own `mode` and
    `webhook_url` and `version`; every problem is a 400 naming it."""
    data = jsonbody.read_object(body, fields=BODY_FIELDS, example='{"input": {...}}')
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidArgument.at("stream", "must be true or false")
    chosen = jsonbody.optional_choice(data, "mode", MODES)
    mode: Mode = "stream" if stream else "blocking"
    for known in MODES:
        if chosen == known:
            if stream and known != "stream":
                raise InvalidArgument.at("mode", f'"{known}" cannot go with "stream": true')
            mode = known
    return FlowAiRequest(
        input=jsonbody.optional_object(data, "input"),
        mode=mode,
        session_id=jsonbody.optional_session_id(data),
        webhook_url=jsonbody.optional_webhook_url(data),
        version=jsonbody.pin(data.get("version")),
    )


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
        case NodeFinished() if event.status == "skipped":
            # FlowAI has no skip event; a finish_node saying so keeps every node visible
            # to clients that draw the graph (docs/nodes.md).
            message = f"Skip node {event.name}, type {event.type}"
            data = {"time_spend": 0, "status": "skipped"}
            return frame(
                "msg", {"Node": event.node_id, "Msg": message, "Type": "finish_node", "Data": data}
            )
        case NodeFinished() if event.status == "succeeded" or event.output is not None:
            # A node that failed with on_error: continue has an output, and the run goes on.
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
    # A failed node's finish (without on_error: continue) is told by the error frame.
    return None


def error_frame(error: FlowportError, *, node_id: str | None = None) -> bytes:
    """A failure after the stream began: its `code` is the REST status of the error's kind."""
    code = statuses.of(error).rest
    return frame(
        "error", {"Node": node_id or error.node_id, "code": code, "message": error.message}
    )


def output_payload(result: RunSucceeded) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "output": result.output,
        "total_time": result.total_time,
        "run_id": result.run_id,
    }
    if result.usage is not None:
        # Ours, after FlowAI's documented fields: only when the run called an LLM.
        payload["usage"] = dict(result.usage)
    return payload


def error_body(error: FlowportError) -> bytes:
    """A failure before the stream began: the body of the HTTP error, `code` its status."""
    return dumps({"code": statuses.of(error).rest, "message": error.message})
