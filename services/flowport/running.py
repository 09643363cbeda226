"""Runs a published workflow: check access, validate input, execute, record. One path for all
surfaces: `Run`, `RunStream`, FlowAI's and LinkAI's routes all drain the same event stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from flowport import url_inputs
from flowport.auth import Principal
from flowport.engine import (
    CompiledWorkflow,
    InputSpec,
    LlmClient,
    NodeFinished,
    RunEvent,
    RunFailed,
    RunSucceeded,
    Token,
    WorkflowLoader,
    compile_workflow,
    execute,
    parse_definition,
    validate_inputs,
)
from flowport.engine.llm import ChatMessage
from flowport.engine.runner import events_of
from flowport.errors import (
    Cancelled,
    ContentBlocked,
    CreditsExhausted,
    FlowportError,
    NotFound,
    PermissionDenied,
    SubWorkflowNotFound,
)
from flowport.ids import new_id
from flowport.outbound import FetchPolicy, Outbound
from flowport.policy import ContentPolicy
from flowport.settings import Settings
from flowport.storage import (
    Database,
    NewRun,
    NodeRunRecord,
    RunWriter,
    get_published_workflow,
)
from flowport.url_inputs import FetchedFile

# A published workflow's newest version is trusted this long without asking the database:
# a version published through another process is used within this time (through this
# process, at once: `forget_workflow`).
WORKFLOW_CACHE_TTL_S = 1.0
# An account seen with unlimited credits spends none for this long: a limit set meanwhile
# (`flowport accounts set-credits`) applies within this time. Limited accounts always spend
# through the database's atomic UPDATE.
UNLIMITED_CACHE_TTL_S = 1.0
# Beyond this many entries a cache starts over, so unknown ids cannot grow it.
CACHE_MAX_ENTRIES = 10_000
# A blocking run's row waits this long for its outcome before it is committed alone: a run
# ending sooner is written once, already finished (one commit instead of two); a longer one
# shows as running from then on.
BLOCKING_ROW_DELAY_S = 0.05

# Maps a surface's raw arguments onto the workflow's declared inputs (LinkAI's `args`).
InputMapper = Callable[[Sequence[InputSpec], dict[str, Any]], dict[str, Any]]


@dataclass(slots=True)
class _ActiveRun:
    """A run executing in this process: the task draining its events, which a cancel call
    cancels, and whether that is what happened."""

    task: asyncio.Task[Any] | None
    cancel_requested: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class _Published:
    """What a run needs of a workflow's newest published version, as last read."""

    workflow_id: str
    account_id: str
    visibility: str
    version: int
    compiled: CompiledWorkflow
    uses_memory: bool
    expires: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run that passed every check and has its row in the database, ready to execute."""

    run_id: str
    account_id: str
    session_id: str
    workflow: CompiledWorkflow
    inputs: dict[str, Any]
    # The session's earlier turns as chat messages, for nodes with `memory: true`.
    history: Sequence[ChatMessage] = field(default_factory=tuple)
    # The account owning the workflow: its workflow nodes run that account's workflows.
    owner_id: str = ""
    # Whether a node keeps memory, so the run's end records the session's turn.
    uses_memory: bool = False
    # The commit of the run's row, when it went through the batching writer.
    row_written: asyncio.Future[None] | None = None
    # The client waits for the outcome (no stream): nothing needs the events as they happen.
    blocking: bool = False


class RunService:
    def __init__(
        self,
        *,
        db: Database,
        llm: LlmClient | None,
        settings: Settings,
        policy: ContentPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        """`busy`: whether this process has other calls in hand than the caller's, whose
        runs' writes are then worth gathering into one commit (see RunWriter)."""
        self._db = db
        self._clock = clock
        self._llm = llm
        self._settings = settings
        self._policy = policy or ContentPolicy([])
        # Fetched files and http nodes: one client, so their connections are reused.
        self._outbound = Outbound(FetchPolicy.from_settings(settings))
        # Starts and ends of runs, committed in batches while the service is busy.
        self._writer = RunWriter(db, busy=busy)
        # Published versions never change, so each is parsed and compiled once.
        self._compiled: dict[tuple[str, int], CompiledWorkflow] = {}
        # Runs executing in this process, by id, so a cancel call can reach them.
        self._active: dict[str, _ActiveRun] = {}
        self._published: dict[str, _Published] = {}
        # Reads in flight by workflow id: runs that miss the cache together share one.
        self._reading: dict[str, asyncio.Future[_Published]] = {}
        # Credit spends in flight that will tell whether an account is unlimited: runs of
        # that account wait for it instead of all asking the database at once.
        self._credit_checks: dict[str, asyncio.Future[None]] = {}
        # Counts forget_workflow calls: a read that overlapped one is used once, never cached.
        self._forgets = 0
        # Accounts with unlimited credits, until when that answer is trusted.
        self._unlimited: dict[str, float] = {}

    async def aclose(self) -> None:
        """Waits for the run rows already handed to the writer; closes outbound connections."""
        await self._writer.close()
        await self._outbound.aclose()

    def forget_workflow(self, workflow_id: str) -> None:
        """The workflow was published or saved: the next run reads it afresh."""
        self._forgets += 1
        self._published.pop(workflow_id, None)
        self._reading.pop(workflow_id, None)

    async def prepare(
        self,
        principal: Principal,
        *,
        workflow_id: str,
        raw_input: object,
        session_id: str | None,
        map_input: InputMapper | None = None,
        blocking: bool = False,
    ) -> PreparedRun:
        """Everything that can fail before the first event: a failure here is a plain HTTP error.
        The checks run in the order LinkAI's error codes imply: scope, workflow, visibility,
        input, content policy, and only then a credit is spent. `blocking`: the client learns
        the run's id only with its outcome, so the run need not wait for its row's commit."""
        principal.require("run")
        workflow = await self._newest(workflow_id)
        if workflow.visibility != "public" and workflow.account_id != principal.account_id:
            raise PermissionDenied(f"workflow {workflow_id} is private to another account")
        compiled = workflow.compiled
        specs = compiled.in_node.inputs
        if map_input is not None and isinstance(raw_input, dict):
            raw_input = map_input(specs, raw_input)
        inputs = validate_inputs(specs, raw_input)
        self._policy.check_inputs(inputs)
        # Outside any database session: a slow file server must not hold a connection.
        inputs = await url_inputs.resolve(specs, inputs, self._outbound)
        self._policy.check_inputs(
            {name: value.text for name, value in inputs.items() if isinstance(value, FetchedFile)}
        )
        run_id = new_id("run", 20)
        memory_session = session_id if workflow.uses_memory else None
        session_id = session_id or new_id("sess", 20)
        account_id = principal.account_id
        spend = self._unlimited.get(account_id, 0.0) <= self._clock()
        checking = self._credit_checks.get(account_id)
        if spend and checking is not None:
            await asyncio.shield(checking)
            spend = self._unlimited.get(account_id, 0.0) <= self._clock()

        new_run = NewRun(
            run_id=run_id,
            account_id=account_id,
            key_id=principal.key_id,
            workflow_id=workflow.workflow_id,
            version=workflow.version,
            inputs=inputs,
            session_id=session_id,
        )
        history: list[ChatMessage] = []
        row_written = None
        if spend or memory_session:
            # The credit, the memory and the row before the first node starts, so no run is
            # ever unaccounted for. The first spend of an account tells whether it is
            # unlimited: its other runs wait for that answer instead of all asking at once.
            first_spend = spend and account_id not in self._credit_checks
            if first_spend:
                check = asyncio.get_running_loop().create_future()
                self._credit_checks[account_id] = check
            try:
                begun = await self._writer.begin(
                    new_run,
                    spend=spend,
                    memory_ttl_s=self._settings.session_ttl_s if memory_session else None,
                )
            finally:
                if first_spend:
                    del self._credit_checks[account_id]
                    check.set_result(None)
            if not begun.spent:
                raise CreditsExhausted("this account's run credits are used up")
            if spend and begun.credits_left is None:
                self._remember_unlimited(account_id)
            for user, assistant in begun.turns:
                history.append(ChatMessage(role="user", content=user))
                history.append(ChatMessage(role="assistant", content=assistant))
        else:
            # Nothing to spend or read: the row alone, through the batching writer.
            row_written = self._writer.start(
                new_run, delay_s=BLOCKING_ROW_DELAY_S if blocking else 0.0
            )
            if not blocking:
                # A stream names the run at once: the row exists before the client can ask.
                # (A blocking run's outcome is committed with or after it, before the client
                # hears of it.) Shielded: a client leaving does not cancel the write.
                await asyncio.shield(row_written)
        return PreparedRun(
            run_id=run_id,
            account_id=principal.account_id,
            session_id=session_id,
            workflow=compiled,
            inputs=inputs,
            history=history,
            owner_id=workflow.account_id,
            uses_memory=workflow.uses_memory,
            row_written=row_written,
            blocking=blocking,
        )

    async def batches(self, run: PreparedRun) -> AsyncGenerator[list[RunEvent], None]:
        """The run's events as they happen, in the engine's batches (every event ready at
        once: a stream sends one message for all). The outcome is recorded before the last
        batch is yielded, so a run acknowledged to the client is on record; a consumer that
        stops early (the client went away) leaves the run recorded as cancelled."""
        nodes: list[NodeRunRecord] = []
        recorded = False
        started = time.perf_counter()
        # Each llm node's text so far: a blocked word is caught as soon as it is generated.
        generated: dict[str, str] = {}
        active = _ActiveRun(task=asyncio.current_task())
        self._active[run.run_id] = active
        try:
            async with aclosing(
                execute(
                    run.workflow,
                    run_id=run.run_id,
                    inputs=run.inputs,
                    session_id=run.session_id,
                    llm=self._llm,
                    default_model=self._settings.llm_model,
                    history=run.history,
                    load_workflow=self._loader(run.owner_id),
                    outbound=self._outbound,
                    # An active content policy watches each token as it comes, so that a
                    # blocked word stops the run before later nodes pass it on.
                    live=not run.blocking or self._policy.active,
                )
            ) as stream:
                async for batch in stream:
                    checked: list[RunEvent] = []
                    for event in batch:
                        blocked = self._blocked(event, generated)
                        if blocked is not None:
                            event = RunFailed(
                                run_id=run.run_id,
                                node_id=blocked.node_id,
                                error=blocked,
                                total_time=time.perf_counter() - started,
                            )
                        checked.append(event)
                        if isinstance(event, NodeFinished):
                            nodes.append(_node_record(event))
                        elif isinstance(event, RunSucceeded | RunFailed):
                            # Set before the write: the writer finishes it even if this task
                            # is cancelled while it waits, so no other outcome may follow.
                            recorded = True
                            await self._record(run, event, nodes)
                            break
                    yield checked
                    if recorded:
                        # Leaving the block closes the engine: in-flight nodes are cancelled.
                        return
        except asyncio.CancelledError:
            if not active.cancel_requested or active.task is None:
                raise
            # A cancel call, not the client leaving: the engine is closed by now, and the
            # client is still there to be told.
            active.task.uncancel()
            if recorded:
                # The run had ended as the call came: its outcome is the answer, once on
                # record (the call cut short this task's wait for that write, not the write).
                await self._writer.flushed()
                yield checked
                return
            recorded = True
            cancelled = _cancelled(run, "the run was cancelled by a cancel request", started)
            await self._record(run, cancelled, nodes)
            yield [cancelled]
        finally:
            del self._active[run.run_id]
            if not recorded:
                # The writer finishes the write even though this task is being cancelled.
                cancelled = _cancelled(run, "the run was cancelled: the client went away", started)
                await self._record(run, cancelled, nodes)
            active.finished.set()

    def events(self, run: PreparedRun) -> AsyncGenerator[RunEvent, None]:
        """The events of `batches`, one by one."""
        return events_of(self.batches(run))

    async def cancel(self, run_id: str, *, wait_s: float = 5.0) -> bool:
        """Cancels a run executing in this process and waits until its outcome is recorded.
        False if it is not running here."""
        active = self._active.get(run_id)
        if active is None or active.task is None:
            return False
        active.cancel_requested = True
        active.task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.finished.wait(), wait_s)
        return True

    async def run_to_end(self, run: PreparedRun) -> RunSucceeded:
        """Drains the same events a stream would send; a failed run raises its error."""
        # Straight from the batches: one generator less per event than `events`.
        async with aclosing(self.batches(run)) as batches:
            async for batch in batches:
                for event in batch:
                    if isinstance(event, RunSucceeded):
                        return event
                    if isinstance(event, RunFailed):
                        raise event.error
        raise FlowportError("the run ended without an outcome")

    def _loader(self, account_id: str) -> WorkflowLoader:
        """What workflow nodes run: the newest published version of a workflow of
        `account_id`, compiled through the same cache."""

        async def load(workflow_id: str) -> CompiledWorkflow:
            try:
                workflow = await self._newest(workflow_id)
            except NotFound as error:
                raise SubWorkflowNotFound(error.message) from None
            if workflow.account_id != account_id:
                # The same answer as for no such workflow: other accounts' ids stay unknown.
                raise SubWorkflowNotFound(f"workflow {workflow_id} not found")
            return workflow.compiled

        return load

    async def _newest(self, workflow_id: str) -> _Published:
        """The workflow's newest published version, from the cache while it is fresh."""
        cached = self._published.get(workflow_id)
        if cached is not None and cached.expires > self._clock():
            return cached
        reading = self._reading.get(workflow_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(workflow_id))
            self._reading[workflow_id] = reading

            def done(future: asyncio.Future[_Published]) -> None:
                # Only this read's own entry: forget_workflow may have replaced it since.
                if self._reading.get(workflow_id) is future:
                    del self._reading[workflow_id]

            reading.add_done_callback(done)
        # Shielded: one run going away must not cancel the others' read.
        return await asyncio.shield(reading)

    async def _read(self, workflow_id: str) -> _Published:
        now = self._clock()
        forgets = self._forgets
        workflow, version = await self._db.run(
            lambda session: get_published_workflow(session, workflow_id=workflow_id)
        )
        compiled = self._compile(workflow.id, version.version, version.definition)
        published = _Published(
            workflow_id=workflow.id,
            account_id=workflow.account_id,
            visibility=workflow.visibility,
            version=version.version,
            compiled=compiled,
            uses_memory=_uses_memory(compiled),
            expires=now + WORKFLOW_CACHE_TTL_S,
        )
        if len(self._published) >= CACHE_MAX_ENTRIES:
            self._published.clear()
        if forgets == self._forgets:
            self._published[workflow_id] = published
        return published

    def _remember_unlimited(self, account_id: str) -> None:
        if len(self._unlimited) >= CACHE_MAX_ENTRIES:
            self._unlimited.clear()
        self._unlimited[account_id] = self._clock() + UNLIMITED_CACHE_TTL_S

    def _blocked(self, event: RunEvent, generated: dict[str, str]) -> ContentBlocked | None:
        if not self._policy.active:
            return None
        try:
            if isinstance(event, Token):
                text = generated.get(event.node_id, "") + event.content
                generated[event.node_id] = text
                self._policy.check_output(text, node_id=event.node_id)
            elif isinstance(event, RunSucceeded):
                self._policy.check_output(event.output)
        except ContentBlocked as error:
            return error
        return None

    def _compile(
        self, workflow_id: str, version: int, definition: Mapping[str, Any]
    ) -> CompiledWorkflow:
        key = (workflow_id, version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_workflow(parse_definition(definition))
            self._compiled[key] = compiled
        return compiled

    async def _record(
        self, run: PreparedRun, outcome: RunSucceeded | RunFailed, nodes: list[NodeRunRecord]
    ) -> None:
        if isinstance(outcome, RunSucceeded):
            status, output, error, error_node = "succeeded", outcome.output, None, None
        else:
            status = "cancelled" if isinstance(outcome.error, Cancelled) else "failed"
            output, error, error_node = None, outcome.error.message, outcome.node_id

        turn = None
        if isinstance(outcome, RunSucceeded) and run.uses_memory:
            user = _turn_text(run.workflow.in_node.inputs, run.inputs)
            turn = (run.account_id, run.session_id, user, outcome.output)
        # The outcome, every node and the session's turn in one transaction, shared with
        # other runs ending now.
        try:
            await self._writer.finish(
                run_id=run.run_id,
                status=status,
                output=output,
                error=error,
                error_node=error_node,
                total_time=outcome.total_time,
                node_runs=nodes,
                turn=turn,
            )
        except NotFound:
            written = run.row_written
            failure = None
            if written is not None and written.done() and not written.cancelled():
                failure = written.exception()
            if failure is not None:
                # The run's row could not be written: that failure, not a missing run.
                raise failure from None
            raise


def _cancelled(run: PreparedRun, message: str, started: float) -> RunFailed:
    """The outcome of a run cancelled before it ended."""
    return RunFailed(
        run_id=run.run_id,
        node_id=None,
        error=Cancelled(message),
        total_time=time.perf_counter() - started,
    )


def _uses_memory(workflow: CompiledWorkflow) -> bool:
    return any(getattr(node, "memory", False) for node in workflow.nodes.values())


def _turn_text(specs: Sequence[InputSpec], inputs: Mapping[str, Any]) -> str:
    """What the user said in a run: LinkAI's input_text, else the first text input, else
    every input as JSON."""
    if isinstance(inputs.get("input_text"), str):
        return inputs["input_text"]
    for spec in specs:
        if spec.type == "text" and isinstance(inputs.get(spec.name), str):
            return inputs[spec.name]
    return json.dumps(dict(inputs), ensure_ascii=False)


def _node_record(event: NodeFinished) -> NodeRunRecord:
    return NodeRunRecord(
        node_id=event.node_id,
        node_type=event.type,
        name=event.name,
        status=event.status,
        started_at=event.started_at,
        time_spend=event.time_spend,
        inputs=event.inputs,
        output=event.output,
        error=event.error,
    )
