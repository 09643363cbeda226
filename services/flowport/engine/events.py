"""The closed set of events a run emits, in the order a client sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flowport.errors import FlowportError

NodeStatus = Literal["succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """Always first; `node_id` is the `in` node, `inputs` the validated input."""

    run_id: str
    node_id: str
    inputs: dict[str, Any]
    session_id: str | None


@dataclass(frozen=True, slots=True)
class NodeStarted:
    node_id: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class NodeFinished:
    """One per NodeStarted. `output` holds the node's output fields when it succeeded."""

    node_id: str
    name: str
    type: str
    status: NodeStatus
    started_at: datetime  # UTC
    time_spend: float  # seconds
    inputs: dict[str, Any] | None
    output: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Token:
    """A chunk of an llm node's answer; a reasoning chunk has content "" and reasoning set."""

    node_id: str
    content: str
    reasoning: str | None


@dataclass(frozen=True, slots=True)
class RunSucceeded:
    """Always last on success; `output` is the text of the last `out` node that finished."""

    run_id: str
    output: str
    total_time: float


@dataclass(frozen=True, slots=True)
class RunFailed:
    """Always last on failure; `node_id` is the node that failed, if one did."""

    run_id: str
    node_id: str | None
    error: FlowportError
    total_time: float


RunEvent = RunStarted | NodeStarted | NodeFinished | Token | RunSucceeded | RunFailed
