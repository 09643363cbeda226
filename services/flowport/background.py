"""Background runs: accepted at once (queued), then executed by whichever replica takes the
job, whether or not anyone watches. A run executes at most once: the replica that takes it
claims it with a conditional write, and a replica that dies while running it has it failed
by the reaper, never run again."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from flowport import url_inputs
from flowport.admission import PreparedRun, history_of, prepared_run, queue_run
from flowport.catalog import Catalog
from flowport.errors import FlowportError
from flowport.execution import Execution
from flowport.jobs import Jobs
from flowport.outbound import Outbound
from flowport.storage import (
    Database,
    Run,
    claim_run,
    expire_keys,
    live_replicas,
    queued_runs,
    run_and_nodes,
)
from flowport.storage.models import utc_now

log = logging.getLogger(__name__)

# A queued run whose job was lost (its replica died between the row and the job) is queued
# again once it has waited this long; this many at a time.
REQUEUE_AFTER_S = 30.0
REQUEUE_BATCH = 100


class BackgroundRuns:
    def __init__(
        self,
        *,
        db: Database,
        jobs: Jobs,
        catalog: Catalog,
        execution: Execution,
        outbound: Outbound,
        replica_id: str,
        session_ttl_s: float,
        idempotency_window_s: float,
        lease_s: float,
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._catalog = catalog
        self._execution = execution
        self._outbound = outbound
        self._replica_id = replica_id
        self._session_ttl_s = session_ttl_s
        self._idempotency_window_s = idempotency_window_s
        self._lease_s = lease_s

    async def execute(self, args: dict[str, Any]) -> None:
        """The run job's handler: claims the run, runs it to its end here."""
        run_id = str(args["run_id"])
        if not await self._db.run(lambda s: claim_run(s, run_id=run_id, owner=self._replica_id)):
            return  # taken by another replica, cancelled, or run already
        record, _ = await self._db.run(lambda s: run_and_nodes(s, run_id=run_id))
        try:
            run = await self._prepared(record)
        except Exception as error:
            if not isinstance(error, FlowportError):
                log.exception("background run %s could not begin", run_id)
                error = FlowportError("internal error")
            await self._execution.fail_unstarted(run_id, error, webhook_url=record.webhook_url)
            return
        await self._execution.run_in_background(run)

    async def _prepared(self, record: Run) -> PreparedRun:
        """The queued run as admission would have prepared it, read from its record."""
        workflow = await self._catalog.version(record.workflow_id, record.version)
        specs = workflow.compiled.in_node.inputs
        # Files are fetched again here: the record keeps their URLs, not their text.
        inputs = await url_inputs.resolve(specs, dict(record.inputs), self._outbound)
        history = []
        if workflow.uses_memory and record.session_id is not None:
            history = await history_of(
                self._db, record.account_id, record.session_id, self._session_ttl_s
            )
        return prepared_run(
            workflow,
            self._catalog,
            run_id=record.id,
            account_id=record.account_id,
            session_id=record.session_id or "",
            inputs=inputs,
            history=history,
            mode="async",
            webhook_url=record.webhook_url,
        )

    async def recover(self) -> None:
        """Runs on every replica's reaper beat: jobs of dead replicas back to the queue,
        queued runs whose job was lost queued again, expired idempotency keys dropped."""
        alive = await self._db.run(lambda s: live_replicas(s, lease_s=self._lease_s))
        await self._jobs.requeue_stalled([replica.id for replica in alive])
        waiting = await self._db.run(
            lambda s: queued_runs(s, older_than_s=REQUEUE_AFTER_S, limit=REQUEUE_BATCH)
        )
        for run_id in waiting:
            await queue_run(self._jobs, run_id)
        before = utc_now() - timedelta(seconds=self._idempotency_window_s)
        await self._db.run(lambda s: expire_keys(s, before=before))
