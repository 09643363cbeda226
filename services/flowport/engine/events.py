"""The closed set of events a run emits, in the order a client sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flowport.engine.llm import TokenUsage
from flowport.errors import FlowportError

# skipped: the node was only reachable through branches that were not taken.
NodeStatus = Literal["succeeded", "failed", "cancelled", "skipped"]


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
    """One per NodeStarted; and one, with status "skipped" and no NodeStarted before it, for
    each node on a branch that was not taken. `output` holds the node's output fields when
    it succeeded, or when it failed with `on_error: continue` (then its default output and
    the error), so that the run goes on."""

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
    # Tokens of every LLM call of the run (sub-workflows too); None when it made none.
    usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True)
class RunFailed:
    """Always last on failure; `node_id` is the node that failed, if one did."""

    run_id: str
    node_id: str | None
    error: FlowportError
    total_time: float
    # Tokens of the LLM calls that finished before the run failed.
    usage: TokenUsage | None = None


RunEvent = RunStarted | NodeStarted | NodeFinished | Token | RunSucceeded | RunFailed
