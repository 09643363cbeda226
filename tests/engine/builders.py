"""Small workflow definitions for the engine tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from flowport.demo import BMI as BMI  # the contract's example, re-exported for the tests
from flowport.engine.definition import CompiledWorkflow, compile_workflow, parse_definition
from flowport.engine.events import NodeFinished, NodeStarted, RunEvent, RunFailed, RunSucceeded
from flowport.engine.inputs import validate_inputs
from flowport.engine.llm import ChatMessage, LlmClient
from flowport.engine.nodes import WorkflowLoader
from flowport.engine.runner import events_of, execute
from flowport.outbound import FetchPolicy, Outbound

# The engine tests' HTTP API listens on 127.0.0.1, which the SSRF guard refuses by default.
LOCAL_POLICY = FetchPolicy(allow=("127.0.0.1",))


def chain(*nodes: dict[str, Any], inputs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """in -> nodes... in a line; the last one should be an out node."""
    start = {"id": "start", "type": "in", "inputs": inputs or [{"name": "text"}]}
    all_nodes = [start, *nodes]
    edges = [{"from": a["id"], "to": b["id"]} for a, b in itertools.pairwise(all_nodes)]
    return {"name": "test", "nodes": all_nodes, "edges": edges}


def compiled(data: dict[str, Any]) -> CompiledWorkflow:
    return compile_workflow(parse_definition(data))


async def batches(
    workflow: CompiledWorkflow,
    inputs: dict[str, Any],
    *,
    llm: LlmClient | None = None,
    history: Sequence[ChatMessage] = (),
    load_workflow: WorkflowLoader | None = None,
    fetch_policy: FetchPolicy = LOCAL_POLICY,
    live: bool = True,
) -> AsyncGenerator[list[RunEvent], None]:
    """The events of one run in the batches `execute` gives them; the run's outbound HTTP
    client is closed when the run is."""
    async with Outbound(fetch_policy) as outbound:
        run = execute(
            workflow,
            run_id="run_1",
            inputs=validate_inputs(workflow.in_node.inputs, inputs),
            session_id="s1",
            llm=llm,
            default_model="default-model",
            history=history,
            load_workflow=load_workflow,
            outbound=outbound,
            live=live,
        )
        async with contextlib.aclosing(run):
            async for batch in run:
                yield batch


def events(
    workflow: CompiledWorkflow, inputs: dict[str, Any], **options: Any
) -> AsyncGenerator[RunEvent, None]:
    """The events of one run, one by one, as they happen (options: those of `batches`)."""
    return events_of(batches(workflow, inputs, **options))


async def collect(stream: AsyncGenerator[RunEvent, None]) -> list[RunEvent]:
    """Every event of a stream, to its end (or a timeout rather than a hung test)."""
    async with asyncio.timeout(10):
        return [event async for event in stream]


async def run_all(
    workflow: CompiledWorkflow,
    inputs: dict[str, Any],
    *,
    llm: LlmClient | None = None,
    history: Sequence[ChatMessage] = (),
    load_workflow: WorkflowLoader | None = None,
    fetch_policy: FetchPolicy = LOCAL_POLICY,
) -> list[RunEvent]:
    """Every event of one run, to its end."""
    return await collect(
        events(
            workflow,
            inputs,
            llm=llm,
            history=history,
            load_workflow=load_workflow,
            fetch_policy=fetch_policy,
        )
    )


def finished(events: list[RunEvent]) -> dict[str, NodeFinished]:
    return {e.node_id: e for e in events if isinstance(e, NodeFinished)}


def statuses(events: list[RunEvent]) -> dict[str, str]:
    return {node_id: event.status for node_id, event in finished(events).items()}


def started(events: list[RunEvent]) -> list[str]:
    return [e.node_id for e in events if isinstance(e, NodeStarted)]


def succeeded(events: list[RunEvent]) -> RunSucceeded:
    last = events[-1]
    assert isinstance(last, RunSucceeded), last
    return last


def failed(events: list[RunEvent]) -> RunFailed:
    last = events[-1]
    assert isinstance(last, RunFailed), last
    return last
