"""Runs a compiled workflow as a DAG of asyncio tasks and streams its events as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowport.engine import templating
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
from flowport.engine.llm import ChatMessage, LlmClient, TokenUsage, add_usage
from flowport.engine.nodes import ELSE, EXECUTORS, IMMEDIATE, NodeContext, WorkflowLoader
from flowport.engine.nodes.base import restated
from flowport.engine.nodes.workflow_node import TooDeep
from flowport.errors import DeadlineExceeded, FlowportError
from flowport.outbound import Outbound

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

# How deep workflow nodes may nest runs: a workflow calling itself ends here.
MAX_DEPTH = 5


async def execute(
    workflow: CompiledWorkflow,
    *,
    run_id: str,
    inputs: dict[str, Any],
    session_id: str | None,
    llm: LlmClient | None,
    default_model: str,
    history: Sequence[ChatMessage] = (),
    load_workflow: WorkflowLoader | None = None,
    outbound: Outbound,
    max_depth: int = MAX_DEPTH,
    depth: int = 0,
    live: bool = True,
    tracer: Tracer | None = None,
) -> AsyncGenerator[list[RunEvent], None]:
    """Runs the workflow on already validated `inputs`.

    Yields the events in batches, each time every event that happened since the consumer
    last asked (never none), so that a consumer sending them over a network can send one
    message for all: RunStarted, then per node NodeStarted, its Tokens (a run of them in
    one batch joined into one), NodeFinished (a skipped node: NodeFinished alone), and last
    RunSucceeded or RunFailed. `events_of` gives them one by one. Closing the iterator early
    (the client went away) cancels every node still running, and returns once they have
    stopped.

    `load_workflow` finds the workflows that workflow nodes run (without it they fail);
    http nodes call through `outbound` (its owner closes it); `depth` is how deep in
    workflow nodes this run is; with a `tracer`, each node runs in a span of its own (child of
    the current one), so that its outbound calls are the node's children.
    Not `live`: every event in one batch once the run is over, for a consumer that waits
    for the outcome anyway; the run then executes in the consumer's own task, which
    saves a task and a wake-up per run (a cancelled consumer cancels it all the same).
    """
    run = _Run(
        workflow,
        run_id=run_id,
        inputs=inputs,
        session_id=session_id,
        llm=llm,
        default_model=default_model,
        history=history,
        load_workflow=load_workflow,
        outbound=outbound,
        max_depth=max_depth,
        depth=depth,
        tracer=tracer,
    )
    if not live:
        if workflow.immediate and tracer is None:
            # No I/O anywhere: no tokens to join either.
            run.drive_now()
            yield run.events.take()
        else:
            await run.drive()
            yield _joined_tokens(run.events.take())
        return
    driver = asyncio.create_task(run.drive(), name=f"run {run_id}")
    try:
        while True:
            batch = await run.events.next_batch()
            yield _joined_tokens(batch)
            if isinstance(batch[-1], RunSucceeded | RunFailed):
                return
    finally:
        if not driver.done():
            driver.cancel()
            # Wait for the nodes to unwind (their HTTP streams closed) before returning;
            # asyncio.wait, unlike await, does not swallow a cancellation of our own task.
            await asyncio.wait({driver})


def run_now(
    workflow: CompiledWorkflow,
    *,
    run_id: str,
    inputs: dict[str, Any],
    session_id: str | None,
    outbound: Outbound,
) -> list[RunEvent]:
    """A workflow of immediate nodes only (`workflow.immediate`) run to its end in the
    caller, synchronously, for a caller that keeps only its record: each node's
    NodeFinished, and the outcome last (no RunStarted, no NodeStarted)."""
    run = _Run(
        workflow,
        run_id=run_id,
        inputs=inputs,
        session_id=session_id,
        llm=None,
        default_model="",
        history=(),
        load_workflow=None,
        outbound=outbound,
        max_depth=0,
        depth=0,
    )
    run.drive_now(announce=False)
    return run.events.take()


class _NodeFailed(Exception):
    def __init__(self, error: FlowportError) -> None:
        super().__init__(error.message)
        self.error = error


class _Run:
    """One run's state; the node tasks report to the consumer through `events`."""

    def __init__(
        self,
        workflow: CompiledWorkflow,
        *,
        run_id: str,
        inputs: dict[str, Any],
        session_id: str | None,
        llm: LlmClient | None,
        default_model: str,
        history: Sequence[ChatMessage],
        load_workflow: WorkflowLoader | None,
        outbound: Outbound,
        max_depth: int,
        depth: int,
        tracer: Tracer | None = None,
    ) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.inputs = inputs
        self.session_id = session_id
        self.llm = llm
        self.default_model = default_model
        self.history = history
        self.load_workflow = load_workflow
        self.outbound = outbound
        self.max_depth = max_depth
        self.depth = depth
        # Unbounded: a node never waits for a slow client; the stream is what it is.
        self.events = _Events()
        # Fields of every node that ran to an output (succeeded, or failed and continued).
        self.outputs: dict[str, dict[str, Any]] = {}
        # The branch each branching node took.
        self.taken: dict[str, str] = {}
        self.final_output = ""
        self.usage: TokenUsage | None = None
        self.tracer = tracer
        # Chosen once: without traces a node costs no span nor any check for one. The
        # class's function, not a bound method: that would tie the run to itself in a
        # cycle, and keep all it holds alive until the garbage collector's next pass.
        self._node = _Run._run_node if tracer is None else _Run._run_traced_node

    async def drive(self) -> None:
        started = time.perf_counter()
        in_node = self.workflow.in_node
        self.events.put(RunStarted(self.run_id, in_node.id, self.inputs, self.session_id))
        deadline = self.workflow.definition.timeout_s
        try:
            async with asyncio.timeout(deadline) as scope:
                await self._schedule()
        except* Exception as group:
            failures = [exc for exc in group.exceptions if isinstance(exc, _NodeFailed)]
            error: FlowportError
            if scope.expired():
                error = DeadlineExceeded(f"the run exceeded its timeout of {deadline:g} s")
            elif failures:
                error = failures[0].error
            else:
                # A bug in the engine itself; the client still gets a final event.
                exc = group.exceptions[0]
                error = FlowportError(f"run failed: {type(exc).__name__}: {exc}")
            self.events.put(
                RunFailed(self.run_id, error.node_id, error, _since(started), self.usage)
            )
        else:
            self.events.put(
                RunSucceeded(self.run_id, self.final_output, _since(started), self.usage)
            )

    async def _schedule(self) -> None:
        # A node starts as soon as all its predecessors finished or were skipped, so
        # independent branches run concurrently and joins never wait for a branch that will
        # not come. Counting down predecessors needs no per-run graph work (graphlib's
        # sorter cost more than running a template node).
        waiting = self.workflow.countdown()
        successors = self.workflow.successors
        ready = deque(node_id for node_id, count in waiting.items() if count == 0)
        # Made when a node first runs as a task: a chain never needs it (its nodes are
        # awaited one by one), and a held stream should not carry it.
        finished: asyncio.Queue[str] | None = None
        running = 0

        def done(node_id: str) -> None:
            for successor in successors[node_id]:
                waiting[successor] -= 1
                if waiting[successor] == 0:
                    ready.append(successor)

        # A node that raises makes the TaskGroup cancel the other nodes and this loop.
        async with asyncio.TaskGroup() as nodes:
            while ready or running:
                if not ready:
                    assert finished is not None  # a node is running as a task
                    done(await finished.get())
                    running -= 1
                    continue
                node_id = ready.popleft()
                if not self._reached(node_id):
                    self._skip(node_id)
                    done(node_id)
                elif running == 0 and not ready:
                    # The only node that can run now (a chain's usual case): awaited here,
                    # which costs no task, and cancels the same way.
                    await self._node(self, node_id)
                    done(node_id)
                else:
                    if finished is None:
                        finished = asyncio.Queue()
                    nodes.create_task(self._node(self, node_id, finished), name=node_id)
                    running += 1

    def _reached(self, node_id: str) -> bool:
        """Whether some edge into the node was taken: its source ran to an output and, for
        a branching source, the edge is on the branch it chose. The in node has no edges."""
        incoming = self.workflow.incoming[node_id]
        return not incoming or any(
            edge.source in self.outputs
            and (edge.branch is None or edge.branch == self.taken.get(edge.source))
            for edge in incoming
        )

    def _skip(self, node_id: str) -> None:
        node = self.workflow.nodes[node_id]
        self.events.put(
            NodeFinished(
                node_id=node_id,
                name=node.name,
                type=node.type,
                status="skipped",
                started_at=datetime.now(UTC),
                time_spend=0.0,
                inputs=None,
                output=None,
                error=None,
            )
        )

    async def _run_traced_node(
        self, node_id: str, finished: asyncio.Queue[str] | None = None
    ) -> None:
        """`_run_node` in a span; a node that fails the run marks it as an error."""
        assert self.tracer is not None
        node = self.workflow.nodes[node_id]
        attributes = {"flowport.node_id": node_id, "flowport.node_type": node.type}
        with self.tracer.start_as_current_span(f"flowport node {node.type}", attributes=attributes):
            await self._run_node(node_id, finished)

    async def _run_node(self, node_id: str, finished: asyncio.Queue[str] | None = None) -> None:
        """Runs one node to its NodeFinished; then, run as a task, reports to `finished`."""
        node = self.workflow.nodes[node_id]
        ctx = self._context(node_id)
        self.events.put(NodeStarted(node_id, node.name, node.type))
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            output = await EXECUTORS[node.type](node, ctx)
        except asyncio.CancelledError:
            self._finished(node_id, ctx, started_at, started, "cancelled", None, None)
            raise
        except Exception as exc:
            self._failed(node_id, ctx, started_at, started, exc)
        else:
            self._keep(node_id, output)
            self._finished(node_id, ctx, started_at, started, "succeeded", output, None)
        if finished is not None:
            finished.put_nowait(node_id)

    def drive_now(self, *, announce: bool = True) -> None:
        """`drive` in one synchronous pass, for a workflow of immediate nodes only: nothing
        in it awaits, so it needs no task per node, no queue and no timeout (none could fire
        before it returns). Nodes come in the workflow's topological order: siblings on
        branches may finish in another order than tasks would give them. Not `announce`:
        without RunStarted and NodeStarted events."""
        started = time.perf_counter()
        if announce:
            self.events.put(
                RunStarted(self.run_id, self.workflow.in_node.id, self.inputs, self.session_id)
            )
        try:
            for node_id in self.workflow.order:
                if self._reached(node_id):
                    self._run_now(node_id, announce)
                else:
                    self._skip(node_id)
        except _NodeFailed as failed:
            error = failed.error
            self.events.put(
                RunFailed(self.run_id, error.node_id, error, _since(started), self.usage)
            )
        else:
            self.events.put(
                RunSucceeded(self.run_id, self.final_output, _since(started), self.usage)
            )

    def _run_now(self, node_id: str, announce: bool) -> None:
        """One immediate node, to its NodeFinished."""
        node = self.workflow.nodes[node_id]
        ctx = self._context(node_id, immediate=True)
        if announce:
            self.events.put(NodeStarted(node_id, node.name, node.type))
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        try:
            output = IMMEDIATE[node.type](node, ctx)
        except Exception as exc:
            self._failed(node_id, ctx, started_at, started, exc)
        else:
            self._keep(node_id, output)
            self._finished(node_id, ctx, started_at, started, "succeeded", output, None)

    def _context(self, node_id: str, *, immediate: bool = False) -> NodeContext:
        """The node's view of the run. An `immediate` node's has no way to emit tokens or
        run workflows, which it never does: nothing is made for them."""
        ancestors = self.workflow.ancestors[node_id]
        outputs = self.outputs
        return NodeContext(
            node_id=node_id,
            inputs=self.inputs,
            outputs={a: outputs[a] for a in ancestors if a in outputs},
            # Every ancestor has finished by now: those without outputs were skipped.
            skipped=frozenset(a for a in ancestors if a not in outputs),
            templates=self.workflow.templates[node_id],
            expressions=self.workflow.expressions[node_id],
            emit_token=_no_tokens
            if immediate
            else lambda content, reasoning: self.events.put(Token(node_id, content, reasoning)),
            llm=self.llm,
            default_model=self.default_model,
            history=self.history,
            outbound=self.outbound,
            load_workflow=self.load_workflow,
            run_workflow=None if immediate else self._child_run,
        )

    def _failed(
        self, node_id: str, ctx: NodeContext, started_at: datetime, started: float, exc: Exception
    ) -> None:
        """A node raised: it fails the run (_NodeFailed), or with `on_error: continue`
        finishes as failed with its default output, and the run goes on."""
        node = self.workflow.nodes[node_id]
        error = _node_error(node_id, exc)
        if node.on_error != "continue":
            self._finished(node_id, ctx, started_at, started, "failed", None, error.message)
            raise _NodeFailed(error) from exc
        output = {"output": node.default_output, "error": error.message}
        if node_id in self.workflow.branching:
            output["branch"] = ELSE
        self._keep(node_id, output)
        self._finished(node_id, ctx, started_at, started, "failed", output, error.message)

    def _finished(
        self,
        node_id: str,
        ctx: NodeContext,
        started_at: datetime,
        started: float,
        status: NodeStatus,
        output: dict[str, Any] | None,
        error: str | None,
    ) -> None:
        node = self.workflow.nodes[node_id]
        self.events.put(
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

    def _keep(self, node_id: str, output: dict[str, Any]) -> None:
        node = self.workflow.nodes[node_id]
        self.outputs[node_id] = output
        if node_id in self.workflow.branching:
            self.taken[node_id] = output["branch"]
        if isinstance(node, OutNode):
            self.final_output = templating.as_text(output["output"])
        usage = output.get("usage")
        if isinstance(usage, dict):
            self.usage = add_usage(self.usage, usage)

    def _child_run(
        self, workflow: CompiledWorkflow, inputs: dict[str, Any]
    ) -> AsyncGenerator[list[RunEvent], None]:
        if self.depth >= self.max_depth:
            raise TooDeep(self.max_depth)
        return execute(
            workflow,
            run_id=f"{self.run_id}.{self.depth + 1}",
            inputs=inputs,
            session_id=self.session_id,
            llm=self.llm,
            default_model=self.default_model,
            history=self.history,
            load_workflow=self.load_workflow,
            outbound=self.outbound,
            max_depth=self.max_depth,
            depth=self.depth + 1,
            tracer=self.tracer,
        )


class _Events:
    """A run's events in order: its nodes put them, its one consumer takes all that wait.

    Not an asyncio.Queue: that counts unfinished tasks and wakes a getter on every put, and
    its put and get cost more than the rest of a template node's events; this consumer
    always takes everything at once."""

    def __init__(self) -> None:
        self._waiting: list[RunEvent] = []
        self._wakeup: asyncio.Future[None] | None = None

    def put(self, event: RunEvent) -> None:
        self._waiting.append(event)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def take(self) -> list[RunEvent]:
        """Every event put since the last take, possibly none."""
        taken, self._waiting = self._waiting, []
        return taken

    async def next_batch(self) -> list[RunEvent]:
        """Every event put since the last take, waiting for the first if there is none."""
        while not self._waiting:
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        return self.take()


def _no_tokens(content: str, reasoning: str | None) -> None:
    raise AssertionError("a node kind that does no I/O emitted a token")


def _joined_tokens(batch: list[RunEvent]) -> list[RunEvent]:
    """The batch with each run of tokens of one node and kind (answer or reasoning) joined
    into one: a provider can write tokens faster than a client takes frames, and those
    already waiting then go as one frame instead of queueing behind per-frame costs."""
    joined: list[RunEvent] = []
    for event in batch:
        last = joined[-1] if joined else None
        if (
            isinstance(event, Token)
            and isinstance(last, Token)
            and last.node_id == event.node_id
            and (last.reasoning is None) == (event.reasoning is None)
        ):
            if event.reasoning is None:
                joined[-1] = Token(event.node_id, last.content + event.content, None)
            else:
                joined[-1] = Token(event.node_id, "", (last.reasoning or "") + event.reasoning)
        else:
            joined.append(event)
    return joined


async def events_of(
    batches: AsyncGenerator[list[RunEvent], None],
) -> AsyncGenerator[RunEvent, None]:
    """The events of `execute`'s batches one by one; closing it closes the run."""
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for event in batch:
                yield event


def _node_error(node_id: str, exc: Exception) -> FlowportError:
    """The error as the client sees it: always a FlowportError that names the node."""
    if isinstance(exc, FlowportError):
        if exc.node_id is not None:
            return exc  # raised by code that knew the node, and named it
        return restated(exc, f"node {node_id}: {exc.message}", node_id=node_id)
    return FlowportError(f"node {node_id} failed: {type(exc).__name__}: {exc}", node_id=node_id)


def _since(start: float) -> float:
    return time.perf_counter() - start
