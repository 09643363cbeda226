"""Runs a published workflow: check access, validate input, execute, record. One path for all
surfaces: `Run`, `RunStream` and FlowAI's route all drain the same event stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowport.auth import Principal
from flowport.engine import (
    CompiledWorkflow,
    LlmClient,
    NodeFinished,
    RunEvent,
    RunFailed,
    RunSucceeded,
    compile_workflow,
    execute,
    parse_definition,
    validate_inputs,
)
from flowport.errors import Cancelled, FlowportError, PermissionDenied
from flowport.ids import new_id
from flowport.settings import Settings
from flowport.storage import (
    Database,
    NodeRunRecord,
    create_run,
    finish_run,
    get_published_workflow,
)


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run that passed every check and has its row in the database, ready to execute."""

    run_id: str
    session_id: str
    workflow: CompiledWorkflow
    inputs: dict[str, Any]


class RunService:
    def __init__(self, *, db: Database, llm: LlmClient | None, settings: Settings) -> None:
        self._db = db
        self._llm = llm
        self._settings = settings
        # Published versions never change, so each is parsed and compiled once.
        self._compiled: dict[tuple[str, int], CompiledWorkflow] = {}

    async def prepare(
        self,
        principal: Principal,
        *,
        workflow_id: str,
        raw_input: object,
        session_id: str | None,
    ) -> PreparedRun:
        """Everything that can fail before the first event: a failure here is a plain HTTP error."""
        principal.require("run")
        async with self._db.session() as session:
            workflow, version = await get_published_workflow(session, workflow_id=workflow_id)
            if workflow.visibility != "public" and workflow.account_id != principal.account_id:
                raise PermissionDenied(f"workflow {workflow_id} is private to another account")
            compiled = self._compile(workflow.id, version.version, version.definition)
            inputs = validate_inputs(compiled.in_node.inputs, raw_input)
            run_id = new_id("run", 20)
            session_id = session_id or new_id("sess", 20)
            # The row exists before the first node starts, so no run is ever unaccounted for.
            await create_run(
                session,
                run_id=run_id,
                account_id=principal.account_id,
                key_id=principal.key_id,
                workflow_id=workflow.id,
                version=version.version,
                inputs=inputs,
                session_id=session_id,
            )
        return PreparedRun(run_id=run_id, session_id=session_id, workflow=compiled, inputs=inputs)

    async def events(self, run: PreparedRun) -> AsyncIterator[RunEvent]:
        """The run's events as they happen. The outcome is recorded before the last event is
        yielded, so a run acknowledged to the client is on record; a consumer that stops early
        (the client went away) leaves the run recorded as cancelled."""
        nodes: list[NodeRunRecord] = []
        recorded = False
        started = time.perf_counter()
        try:
            async for event in execute(
                run.workflow,
                run_id=run.run_id,
                inputs=run.inputs,
                session_id=run.session_id,
                llm=self._llm,
                default_model=self._settings.llm_model,
            ):
                if isinstance(event, NodeFinished):
                    nodes.append(_node_record(event))
                elif isinstance(event, RunSucceeded | RunFailed):
                    await self._record(run, event, nodes)
                    recorded = True
                yield event
        finally:
            if not recorded:
                cancelled = RunFailed(
                    run_id=run.run_id,
                    node_id=None,
                    error=Cancelled("the run was cancelled: the client went away"),
                    total_time=time.perf_counter() - started,
                )
                # Shielded: the task doing this is itself being cancelled.
                await asyncio.shield(self._record(run, cancelled, nodes))

    async def run_to_end(self, run: PreparedRun) -> RunSucceeded:
        """Drains the same events a stream would send; a failed run raises its error."""
        async for event in self.events(run):
            if isinstance(event, RunSucceeded):
                return event
            if isinstance(event, RunFailed):
                raise event.error
        raise FlowportError("the run ended without an outcome")

    def _compile(self, workflow_id: str, version: int, definition: Mapping[str, Any]):
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
        async with self._db.session() as session:
            await finish_run(
                session,
                run_id=run.run_id,
                status=status,
                output=output,
                error=error,
                error_node=error_node,
                total_time=outcome.total_time,
                node_runs=nodes,
            )


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
