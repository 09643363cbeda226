"""Runs a compiled workflow as a DAG of asyncio tasks and streams its events as they happen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import Any

from flowport.engine.definition import CompiledWorkflow, OutNode
from flowport.engine.events import (
    NodeFinished,
    NodeStarted,
    NodeStatus,
    RunEvent,
    RunFailed,
    RunStarted,
    RunSucceeded,
    Token,
)
from flowport.engine.llm import ChatMessage, LlmClient
from flowport.engine.nodes import EXECUTORS, NodeContext
from flowport.errors import FlowportError


async def execute(
    workflow: CompiledWorkflow,
    *,
    run_id: str,
    inputs: dict[str, Any],
    session_id: str | None,
    llm: LlmClient | None,
    default_model: str,
    history: Sequence[ChatMessage] = (),
) -> AsyncGenerator[RunEvent, None]:
    """Runs the workflow on already validated `inputs`.

    Yields RunStarted, then per node NodeStarted, its Tokens, NodeFinished, and last
    RunSucceeded or RunFailed. Closing the iterator early (the client went away) cancels
    every node still running, and returns once they have stopped.
    """
    run = _Run(workflow, run_id, inputs, session_id, llm, default_model, history)
    driver = asyncio.create_task(run.drive(), name=f"run {run_id}")
    try:
        while True:
            event = await run.events.get()
            yield event
            if isinstance(event, RunSucceeded | RunFailed):
                return
    finally:
        driver.cancel()
        # Wait for the nodes to unwind (their HTTP streams closed) before returning;
        # asyncio.wait, unlike await, does not swallow a cancellation of our own task.
        await asyncio.wait({driver})


class _NodeFailed(Exception):
    def __init__(self, error: FlowportError) -> None:
        super().__init__(error.message)
        self.error = error


class _Run:
    """One run's state; the node tasks report to the consumer through `events`."""

    def __init__(
        self,
        workflow: CompiledWorkflow,
        run_id: str,
        inputs: dict[str, Any],
        session_id: str | None,
        llm: LlmClient | None,
        default_model: str,
        history: Sequence[ChatMessage],
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.inputs = inputs
        self.session_id = session_id
        self.llm = llm
        self.default_model = default_model
        self.history = history
        # Unbounded: a node never waits for a slow client; the stream is what it is.
        self.events: asyncio.Queue[RunEvent] = asyncio.Queue()
        self.outputs: dict[str, dict[str, Any]] = {}
        self.final_output = ""

    async def drive(self) -> None:
        started = time.perf_counter()
        in_node = self.workflow.in_node
        self.events.put_nowait(RunStarted(self.run_id, in_node.id, self.inputs, self.session_id))
        try:
            await self._schedule()
        except* Exception as group:
            failures = [exc for exc in group.exceptions if isinstance(exc, _NodeFailed)]
            if failures:
                error = failures[0].error
            else:
                # A bug in the engine itself; the client still gets a final event.
                exc = group.exceptions[0]
                error = FlowportError(f"run failed: {type(exc).__name__}: {exc}")
            self.events.put_nowait(RunFailed(self.run_id, error.node_id, error, _since(started)))
        else:
            self.events.put_nowait(RunSucceeded(self.run_id, self.final_output, _since(started)))

    async def _schedule(self) -> None:
        # graphlib's ready set: a node starts as soon as all its predecessors finished,
        # so independent branches run concurrently.
        sorter = self.workflow.sorter()
        finished: asyncio.Queue[str] = asyncio.Queue()
        # A node that raises makes the TaskGroup cancel the other nodes and this loop.
        async with asyncio.TaskGroup() as nodes:
            while sorter.is_active():
                for node_id in sorter.get_ready():
                    nodes.create_task(self._run_node(node_id, finished), name=node_id)
                sorter.done(await finished.get())

    async def _run_node(self, node_id: str, finished: asyncio.Queue[str]) -> None:
        node = self.workflow.nodes[node_id]
        ctx = NodeContext(
            node_id=node_id,
            inputs=self.inputs,
            outputs={a: self.outputs[a] for a in self.workflow.ancestors[node_id]},
            templates=self.workflow.templates[node_id],
            emit_token=lambda content, reasoning: self.events.put_nowait(
                Token(node_id, content, reasoning)
            ),
            llm=self.llm,
            default_model=self.default_model,
            history=self.history,
        )
        self.events.put_nowait(NodeStarted(node_id, node.name, node.type))
        started_at = datetime.now(UTC)
        started = time.perf_counter()

        def finish(status: NodeStatus, output: dict[str, Any] | None, error: str | None) -> None:
            self.events.put_nowait(
                NodeFinished(
                    node_id=node_id,
                    name=node.name,
                    type=node.type,
                    status=status,
                    started_at=started_at,
                    time_spend=_since(started),
                    inputs=ctx.node_inputs,
                    output=output,
                    error=error,
                )
            )

        try:
            output = await EXECUTORS[node.type](node, ctx)
        except asyncio.CancelledError:
            finish("cancelled", None, None)
            raise
        except Exception as exc:
            error = _node_error(node_id, exc)
            finish("failed", None, error.message)
            raise _NodeFailed(error) from exc
        self.outputs[node_id] = output
        if isinstance(node, OutNode):
            self.final_output = output["output"]
        finish("succeeded", output, None)
        finished.put_nowait(node_id)


def _node_error(node_id: str, exc: Exception) -> FlowportError:
    """The error as the client sees it: always a FlowportError that names the node."""
    if isinstance(exc, FlowportError):
        if exc.node_id is not None:
            return exc  # raised by code that knew the node, and named it
        # Same class (so the same status code), with the node in front.
        return type(exc)(f"node {node_id}: {exc.message}", node_id=node_id)
    return FlowportError(f"node {node_id} failed: {type(exc).__name__}: {exc}", node_id=node_id)


def _since(start: float) -> float:
    return time.perf_counter() - start
