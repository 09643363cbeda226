"""Admission: may this call start a run, and with which inputs? The key's scope, the
workflow's visibility, the inputs, the content policy, the webhook and the account's credits,
checked in the order LinkAI's error codes imply; a run that passes has its row written (a
background run's queued, with its job)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowport import url_inputs
from flowport.auth import Principal
from flowport.catalog import Catalog, Published
from flowport.engine import CompiledWorkflow, InputSpec, WorkflowLoader, validate_inputs
from flowport.engine.llm import ChatMessage
from flowport.errors import CreditsExhausted, PermissionDenied, QueueFull
from flowport.ids import new_id
from flowport.jobs import Jobs
from flowport.modes import Mode
from flowport.outbound import Outbound
from flowport.policy import ContentPolicy
from flowport.storage import Database, NewRun, Pin, Recorder, count_queued, recent_turns
from flowport.url_inputs import FetchedFile
from flowport.webhooks import check_webhook_url

# An account seen with unlimited credits spends none for this long: a limit set meanwhile
# (`flowport accounts set-credits`) applies within this time. Limited accounts always spend
# through the database's atomic UPDATE.
UNLIMITED_CACHE_TTL_S = 1.0
# Beyond this many entries the cache of unlimited accounts starts over.
CACHE_MAX_ENTRIES = 10_000
# A blocking run's row waits this long for its outcome before it is committed alone: a run
# ending sooner is written once, already finished (one commit instead of two); a longer one
# shows as running from then on.
BLOCKING_ROW_DELAY_S = 0.05

# Maps a surface's raw arguments onto the workflow's declared inputs (LinkAI's `args`).
InputMapper = Callable[[Sequence[InputSpec], dict[str, Any]], dict[str, Any]]
# The job kind that executes a background run.
RUN_JOB = "run"


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """A run that passed every check and has its row in the database, ready to execute."""

    run_id: str
    account_id: str
    session_id: str
    # The workflow's id (its metrics are counted by it).
    workflow_id: str
    # The published version that runs.
    version: int
    workflow: CompiledWorkflow
    inputs: dict[str, Any]
    # What workflow nodes of this run execute: the owning account's workflows.
    load_workflow: WorkflowLoader
    # The session's earlier turns as chat messages, for nodes with `memory: true`.
    history: Sequence[ChatMessage] = field(default_factory=tuple)
    # The user's side of the session's turn this run adds, when a node keeps memory.
    turn_text: str | None = None
    # The commit of the run's row, when it went through the recorder's batches.
    row_written: asyncio.Future[bool] | None = None
    # The run's row, when it is written only with the run's end.
    unwritten: NewRun | None = None
    mode: Mode = "blocking"
    # Where its end is POSTed, when anywhere.
    webhook_url: str | None = None

    @property
    def blocking(self) -> bool:
        """The client waits for the outcome: nothing needs the events as they happen."""
        return self.mode == "blocking"


class Admission:
    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        recorder: Recorder,
        jobs: Jobs,
        policy: ContentPolicy,
        outbound: Outbound,
        replica_id: str,
        session_ttl_s: float,
        max_queued_per_account: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._recorder = recorder
        self._jobs = jobs
        self._max_queued = max_queued_per_account
        self._policy = policy
        self._outbound = outbound
        self._replica_id = replica_id
        self._session_ttl_s = session_ttl_s
        self._clock = clock
        # Accounts with unlimited credits, until when that answer is trusted.
        self._unlimited: dict[str, float] = {}
        # Credit spends in flight that will tell whether an account is unlimited: runs of
        # that account wait for it instead of all asking the database at once.
        self._credit_checks: dict[str, asyncio.Future[None]] = {}

    async def admit(
        self,
        principal: Principal,
        *,
        workflow_id: str,
        raw_input: object,
        session_id: str | None,
        map_input: InputMapper | None = None,
        mode: Mode = "blocking",
        webhook_url: str | None = None,
        run_id: str | None = None,
        version: Pin = None,
    ) -> PreparedRun:
        """Everything that can fail before the first event: a failure here is a plain HTTP
        error. Scope, workflow, visibility, input, content policy, webhook, the queue's
        bound, and only then a credit is spent. A blocking client learns the run's id only
        with its outcome, so its run need not wait for its row's commit. `run_id`: the id an
        Idempotency-Key claimed for it. `version`: the version number or alias the call
        pins, else the newest runs."""
        workflow = await self.runnable(principal, workflow_id, version)
        specs = workflow.compiled.in_node.inputs
        if map_input is not None and isinstance(raw_input, dict):
            raw_input = map_input(specs, raw_input)
        inputs = validate_inputs(specs, raw_input)
        self._policy.check_inputs(inputs)
        # Outside any database session: a slow file server must not hold a connection.
        inputs = await url_inputs.resolve(specs, inputs, self._outbound)
        self._policy.check_inputs(
            {name: value.text for name, value in inputs.items() if isinstance(value, FetchedFile)}
        )
        # A workflow's own webhook hears its own account's runs only: a public workflow's
        # owner is not told other accounts' inputs.
        if webhook_url is None and workflow.account_id == principal.account_id:
            webhook_url = workflow.compiled.definition.webhook_url
        if webhook_url is not None:
            await check_webhook_url(
                webhook_url, account_id=principal.account_id, db=self._db, outbound=self._outbound
            )
        if mode == "async":
            await self._check_queue(principal.account_id)
        run_id = run_id or new_id("run", 20)
        # A background run reads its session's memory when it executes.
        memory_session = session_id if workflow.uses_memory and mode != "async" else None
        session_id = session_id or new_id("sess", 20)
        new_run = NewRun(
            run_id=run_id,
            account_id=principal.account_id,
            key_id=principal.key_id,
            workflow_id=workflow.workflow_id,
            version=workflow.version,
            inputs=inputs,
            session_id=session_id,
            # A background run is the replica's that takes its job.
            owner=None if mode == "async" else self._replica_id,
            status="queued" if mode == "async" else "running",
            webhook_url=webhook_url,
        )
        history: list[ChatMessage] = []
        row_written = unwritten = None
        spend = await self._must_spend(principal.account_id)
        if spend or memory_session:
            turns = await self._begin(new_run, spend=spend, memory=memory_session is not None)
            for user, assistant in turns:
                history.append(ChatMessage(role="user", content=user))
                history.append(ChatMessage(role="assistant", content=assistant))
        elif mode == "blocking" and workflow.compiled.immediate:
            # Its nodes do no I/O: it runs in one pass, never to be seen running, and its
            # row is written once, finished, with its end.
            unwritten = new_run
        else:
            # Nothing to spend or read: the row alone, through the recorder's batches.
            row_written = self._recorder.start(
                new_run, delay_s=BLOCKING_ROW_DELAY_S if mode == "blocking" else 0.0
            )
            if mode != "blocking":
                # A stream names the run at once: the row exists before the client can ask.
                # (A blocking run's outcome is committed with or after it, before the client
                # hears of it.) Shielded: a client leaving does not cancel the write.
                await asyncio.shield(row_written)
        if mode == "async":
            await queue_run(self._jobs, run_id)
        return prepared_run(
            workflow,
            self._catalog,
            run_id=run_id,
            account_id=principal.account_id,
            session_id=session_id,
            inputs=inputs,
            history=history,
            mode=mode,
            webhook_url=webhook_url,
            row_written=row_written,
            unwritten=unwritten,
        )

    async def runnable(self, principal: Principal, workflow_id: str, version: Pin) -> Published:
        """The version of the workflow a call pins (else the newest), if `principal` may run
        it: the run scope, the key's list of workflows, the workflow's visibility."""
        principal.require("run")
        principal.may_run(workflow_id)
        workflow = await self._catalog.newest(workflow_id)
        if workflow.visibility != "public" and workflow.account_id != principal.account_id:
            raise PermissionDenied(f"workflow {workflow_id} is private to another account")
        if version is None:
            return workflow
        # Only a caller who may run the workflow learns which versions and aliases it has.
        return await self._catalog.pinned(workflow_id, version)

    async def _check_queue(self, account_id: str) -> None:
        waiting = await self._db.run(lambda s: count_queued(s, account_id=account_id))
        if waiting >= self._max_queued:
            raise QueueFull(
                f"this account has {waiting} background runs waiting, as many as it may"
            )

    async def _must_spend(self, account_id: str) -> bool:
        """Whether this run spends a credit: not when the account was just seen unlimited.
        A spend already telling whether it is unlimited is waited for."""
        checking = self._credit_checks.get(account_id)
        if self._unlimited.get(account_id, 0.0) > self._clock():
            return False
        if checking is not None:
            await asyncio.shield(checking)
            return self._unlimited.get(account_id, 0.0) <= self._clock()
        return True

    async def _begin(self, run: NewRun, *, spend: bool, memory: bool) -> list[tuple[str, str]]:
        """The credit, the memory and the row before the first node starts, so no run is ever
        unaccounted for; returns the session's turns. The first spend of an account tells
        whether it is unlimited: its other runs wait for that answer."""
        first_spend = spend and run.account_id not in self._credit_checks
        if first_spend:
            check = asyncio.get_running_loop().create_future()
            self._credit_checks[run.account_id] = check
        try:
            begun = await self._recorder.begin(
                run, spend=spend, memory_ttl_s=self._session_ttl_s if memory else None
            )
        finally:
            if first_spend:
                del self._credit_checks[run.account_id]
                check.set_result(None)
        if not begun.spent:
            raise CreditsExhausted("this account's run credits are used up")
        if spend and begun.credits_left is None:
            if len(self._unlimited) >= CACHE_MAX_ENTRIES:
                self._unlimited.clear()
            self._unlimited[run.account_id] = self._clock() + UNLIMITED_CACHE_TTL_S
        return begun.turns


async def queue_run(jobs: Jobs, run_id: str) -> None:
    """The background run's job, for any replica to take (background.py): one, however
    often asked (its lock is the run)."""
    await jobs.defer(RUN_JOB, {"run_id": run_id}, lock=run_id)


async def history_of(
    db: Database, account_id: str, session_id: str, ttl_s: float
) -> list[ChatMessage]:
    """The session's turns as chat messages, oldest first; none once its memory expired."""
    turns = await db.run(
        lambda s: recent_turns(s, account_id=account_id, session_id=session_id, ttl_s=ttl_s)
    )
    history: list[ChatMessage] = []
    for turn in turns:
        history.append(ChatMessage(role="user", content=turn.user))
        history.append(ChatMessage(role="assistant", content=turn.assistant))
    return history


def prepared_run(
    workflow: Published,
    catalog: Catalog,
    *,
    run_id: str,
    account_id: str,
    session_id: str,
    inputs: dict[str, Any],
    history: Sequence[ChatMessage],
    mode: Mode,
    webhook_url: str | None,
    row_written: asyncio.Future[bool] | None = None,
    unwritten: NewRun | None = None,
) -> PreparedRun:
    """The run of `workflow`: what follows from the workflow (its version, compiled form,
    loader of sub-workflows, the session turn it adds) derived in this one place, for runs
    admitted now and for queued runs a replica takes up later."""
    return PreparedRun(
        run_id=run_id,
        account_id=account_id,
        session_id=session_id,
        workflow_id=workflow.workflow_id,
        version=workflow.version,
        workflow=workflow.compiled,
        inputs=inputs,
        load_workflow=catalog.loader(workflow.account_id),
        history=history,
        turn_text=turn_text(workflow.compiled.in_node.inputs, inputs)
        if workflow.uses_memory
        else None,
        row_written=row_written,
        unwritten=unwritten,
        mode=mode,
        webhook_url=webhook_url,
    )


def turn_text(specs: Sequence[InputSpec], inputs: Mapping[str, Any]) -> str:
    """What the user said in a run: LinkAI's input_text, else the first text input, else
    every input as JSON."""
    if isinstance(inputs.get("input_text"), str):
        return inputs["input_text"]
    for spec in specs:
        if spec.type == "text" and isinstance(inputs.get(spec.name), str):
            return inputs[spec.name]
    return json.dumps(dict(inputs), ensure_ascii=False)
