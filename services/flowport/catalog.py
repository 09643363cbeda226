"""The workflow catalog: which version of a workflow a run executes, compiled once."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowport.cache import LoadingCache
from flowport.engine import CompiledWorkflow, WorkflowLoader, compile_workflow, parse_definition
from flowport.errors import NotFound, SubWorkflowNotFound
from flowport.storage import Database, Pin, get_published_workflow

# A workflow's newest version is trusted this long without asking the database: a version
# published by a process that tells no replica (the CLI) is used within this time.
CACHE_TTL_S = 1.0
# Compiled versions kept; a version is immutable, so one compiled is good until evicted.
MAX_COMPILED = 1_000


@dataclass(frozen=True, slots=True)
class Published:
    """What a run needs of a workflow's newest published version."""

    workflow_id: str
    account_id: str
    visibility: str
    version: int
    compiled: CompiledWorkflow
    # Whether a node keeps the session's memory: its runs read the session's turns and
    # record one.
    uses_memory: bool


class Catalog:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._db = db
        self._newest: LoadingCache[str, Published] = LoadingCache(ttl_s=CACHE_TTL_S, clock=clock)
        # Runs that pin a version or an alias; an alias moved is forgotten like a publish.
        self._pinned: LoadingCache[tuple[str, int | str], Published] = LoadingCache(
            ttl_s=CACHE_TTL_S, clock=clock
        )
        self._compiled: dict[tuple[str, int], CompiledWorkflow] = {}

    async def newest(self, workflow_id: str) -> Published:
        """The workflow's newest published version; NotFound if it has none."""
        return await self._newest.get(workflow_id, lambda: self._read(workflow_id))

    async def pinned(self, workflow_id: str, pin: Pin) -> Published:
        """The version a run call pins (a number or an alias), else the newest; NotFound (or
        VersionNotFound) if there is no such version."""
        if pin is None:
            return await self.newest(workflow_id)
        return await self._pinned.get((workflow_id, pin), lambda: self._read(workflow_id, pin))

    async def version(self, workflow_id: str, version: int) -> Published:
        """A published version, newest or not (a background run's, taken after a newer one
        was published); read each time, compiled once."""
        return await self._read(workflow_id, version)

    def forget(self, workflow_id: str) -> None:
        """The workflow was published or saved, or an alias moved: the next run reads it
        afresh."""
        self._newest.invalidate(workflow_id)
        self._pinned.invalidate_where(lambda published: published.workflow_id == workflow_id)

    def loader(self, account_id: str) -> WorkflowLoader:
        """What workflow nodes of `account_id`'s runs execute: the newest version of another
        workflow of that account."""

        async def load(workflow_id: str) -> CompiledWorkflow:
            try:
                workflow = await self.newest(workflow_id)
            except NotFound as error:
                raise SubWorkflowNotFound(error.message) from None
            if workflow.account_id != account_id:
                # The same answer as for no such workflow: other accounts' ids stay unknown.
                raise SubWorkflowNotFound(f"workflow {workflow_id} not found")
            return workflow.compiled

        return load

    async def _read(self, workflow_id: str, number: Pin = None) -> Published:
        workflow, version = await self._db.run(
            lambda session: get_published_workflow(session, workflow_id=workflow_id, version=number)
        )
        compiled = self._compile(workflow.id, version.version, version.definition)
        return Published(
            workflow_id=workflow.id,
            account_id=workflow.account_id,
            visibility=workflow.visibility,
            version=version.version,
            compiled=compiled,
            uses_memory=any(getattr(node, "memory", False) for node in compiled.nodes.values()),
        )

    def _compile(
        self, workflow_id: str, version: int, definition: Mapping[str, Any]
    ) -> CompiledWorkflow:
        key = (workflow_id, version)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_workflow(parse_definition(definition))
            if len(self._compiled) >= MAX_COMPILED:
                self._compiled.clear()
            self._compiled[key] = compiled
        return compiled
