"""Cancel from anywhere: a cancel call reaches the replica executing the run, and answers
once the run has stopped. A background run still in the queue is cancelled where it waits."""

from __future__ import annotations

import asyncio
import time

from flowport import statuses
from flowport.errors import Cancelled, RunEnded
from flowport.execution import CANCELLED_BY_REQUEST, Execution
from flowport.replicas import Replica
from flowport.storage import LIVE_STATUSES, Database, NodeRun, Run, cancel_queued, get_run
from flowport.webhooks import Deliveries

# How long a cancel call waits for the run's replica to record that it stopped.
CANCEL_WAIT_S = 10.0
# How often it looks at the record meanwhile, and tells the replicas again.
CANCEL_POLL_S = 0.05
CANCEL_RETELL_S = 1.0


async def cancel(
    *,
    account_id: str,
    run_id: str,
    db: Database,
    execution: Execution,
    replica: Replica,
    webhooks: Deliveries,
) -> tuple[Run, list[NodeRun]]:
    """The run's record once it has stopped; NotFound for another account's run, RunEnded
    when it had already ended. A run executing elsewhere is cancelled by its replica, told
    through the channel; if that replica does not answer within CANCEL_WAIT_S, the record as
    it stands (the reaper ends the run if its replica died)."""
    run, nodes = await _record(db, account_id, run_id)
    if run.status not in LIVE_STATUSES:
        raise RunEnded(f"the run already {run.status}")
    if run.status == "queued" and await _cancel_queued(db, run_id):
        if run.webhook_url is not None:
            await webhooks.schedule(run_id)
        return await _record(db, account_id, run_id)
    if not await execution.cancel_here(run_id):
        deadline = time.monotonic() + CANCEL_WAIT_S
        told = 0.0
        while run.status in LIVE_STATUSES and time.monotonic() < deadline:
            # Told again each second: a run taken from the queue a moment ago may not have
            # been executing yet on its replica when the first word came.
            if time.monotonic() - told >= CANCEL_RETELL_S:
                await replica.publish("cancel", run_id)
                told = time.monotonic()
            await asyncio.sleep(CANCEL_POLL_S)
            run, nodes = await _record(db, account_id, run_id)
        return run, nodes
    return await _record(db, account_id, run_id)


async def _cancel_queued(db: Database, run_id: str) -> bool:
    """False when a replica took the run meanwhile: it is cancelled where it runs."""
    code = statuses.of(Cancelled(CANCELLED_BY_REQUEST)).rest
    return await db.run(
        lambda s: cancel_queued(s, run_id=run_id, reason=CANCELLED_BY_REQUEST, code=code)
    )


async def _record(db: Database, account_id: str, run_id: str) -> tuple[Run, list[NodeRun]]:
    return await db.run(lambda s: get_run(s, account_id=account_id, run_id=run_id))
