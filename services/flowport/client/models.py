"""What the client answers: the run frames of FlowAI's stream as typed events, and the
records of runs, keys and workflows. Unknown fields are ignored, so a newer server's
additions do not break an older client."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


# -- run frames ----------------------------------------------------------------------------


class Usage(_Model):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


class _Event(_Model):
    # The frame's number within its run (frame n has id n), where the client knows it.
    id: int | None = None


class RunStarted(_Event):
    """The first frame: the run began on its `in` node with this (validated) input."""

    kind: Literal["run_started"] = "run_started"
    node: str = Field(alias="Node")
    input: dict[str, Any] = Field(default_factory=dict, alias="Data")


class NodeStarted(_Event):
    kind: Literal["node_started"] = "node_started"
    node: str = Field(alias="Node")
    message: str = Field(alias="Msg")


class NodeFinished(_Event):
    """A node succeeded, or was skipped on a branch not taken (`skipped`, no NodeStarted)."""

    kind: Literal["node_finished"] = "node_finished"
    node: str = Field(alias="Node")
    message: str = Field(alias="Msg")
    time_spend: float = 0.0
    skipped: bool = False


class Chunk(_Event):
    """Text of an llm node as the model generates it: its answer, or its reasoning."""

    kind: Literal["chunk"] = "chunk"
    node: str = Field(alias="Node")
    content: str = Field("", alias="Content")
    reasoning: str | None = Field(None, alias="Reasoning")


class Output(_Event):
    """The run succeeded: the last frame."""

    kind: Literal["output"] = "output"
    output: str
    total_time: float
    run_id: str
    usage: Usage | None = None


class RunFailed(_Event):
    """The run failed (or was cancelled: code 499) after it began: the last frame."""

    kind: Literal["error"] = "error"
    node: str | None = Field(None, alias="Node")
    code: int
    message: str


class UnknownEvent(_Event):
    """A frame this client does not know (a newer server's), passed on as it came."""

    kind: Literal["unknown"] = "unknown"
    event: str
    data: str


Event = RunStarted | NodeStarted | NodeFinished | Chunk | Output | RunFailed | UnknownEvent


def parse_event(event: str, data: str, id: int | None) -> Event:
    """One SSE frame of FlowAI's stream or of a run's events, typed."""
    body = json.loads(data)
    if event == "msg":
        kind = body.get("Type")
        if kind == "start":
            return RunStarted.model_validate({**body, "id": id})
        if kind == "start_node":
            return NodeStarted.model_validate({**body, "id": id})
        if kind == "finish_node":
            details = body.get("Data") or {}
            return NodeFinished.model_validate(
                {
                    **body,
                    "id": id,
                    "time_spend": details.get("time_spend", 0.0),
                    "skipped": details.get("status") == "skipped",
                }
            )
    elif event == "stream":
        return Chunk.model_validate({**body, "id": id})
    elif event == "output":
        return Output.model_validate({**body, "id": id})
    elif event == "error":
        return RunFailed.model_validate({**body, "id": id})
    return UnknownEvent(event=event, data=data, id=id)


def is_last(event: Event) -> bool:
    return isinstance(event, Output | RunFailed)


# -- answers and records -------------------------------------------------------------------


class RunResult(_Model):
    """A blocking run's answer."""

    output: str
    total_time: float
    run_id: str
    session_id: str | None = None
    usage: Usage | None = None


class Accepted(_Model):
    """A background run's answer (202): the run is queued."""

    run_id: str
    status: str
    events_url: str


class NodeRun(_Model):
    node_id: str
    name: str = ""
    type: str = ""
    status: str = ""
    time_spend: float = 0.0
    started_at: datetime | None = None
    output: dict[str, Any] | None = None
    error: str | None = None


class WebhookDelivery(_Model):
    attempt: int
    status_code: int | None = None
    error: str | None = None
    at: datetime | None = None


class Run(_Model):
    """A run's record, as `GET /v1/runs/{run_id}` answers it."""

    id: str
    workflow_id: str
    version: int = 0
    status: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None
    error: str | None = None
    error_node: str | None = None
    total_time: float | None = None
    session_id: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nodes: list[NodeRun] = Field(default_factory=list)
    webhook_deliveries: list[WebhookDelivery] = Field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


class ApiKey(_Model):
    id: str
    name: str
    prefix: str
    scopes: list[str] = Field(default_factory=list)
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked: bool = False
    expires_at: datetime | None = None
    workflows: list[str] = Field(default_factory=list)
    previous_key_expires_at: datetime | None = None


class NewApiKey(ApiKey):
    """A key just created or rotated: `key` is its secret, shown this once."""

    key: str


class Workflow(_Model):
    id: str
    name: str
    visibility: str = "private"
    status: str = "draft"
    latest_version: int = 0
    definition: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Published(_Model):
    id: str
    version: int
