"""Flowport's Python client: runs (blocking, streamed as typed events, in the background),
run records and events resumed after a drop, cancelling, keys and workflows, with retries
that never run a workflow twice."""

from flowport.client.aio import AsyncClient, AsyncEventStream
from flowport.client.errors import FlowportError
from flowport.client.models import (
    Accepted,
    ApiKey,
    Chunk,
    Event,
    NewApiKey,
    NodeFinished,
    NodeRun,
    NodeStarted,
    Output,
    Published,
    Run,
    RunFailed,
    RunResult,
    RunStarted,
    UnknownEvent,
    Usage,
    WebhookDelivery,
    Workflow,
)
from flowport.client.retries import RetryPolicy
from flowport.client.sync import Client, EventStream

__all__ = [
    "Accepted",
    "ApiKey",
    "AsyncClient",
    "AsyncEventStream",
    "Chunk",
    "Client",
    "Event",
    "EventStream",
    "FlowportError",
    "NewApiKey",
    "NodeFinished",
    "NodeRun",
    "NodeStarted",
    "Output",
    "Published",
    "RetryPolicy",
    "Run",
    "RunFailed",
    "RunResult",
    "RunStarted",
    "UnknownEvent",
    "Usage",
    "WebhookDelivery",
    "Workflow",
]
