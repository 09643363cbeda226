"""Cancel from anywhere: a cancel call reaches the replica executing the run, and answers
once the run has stopped."""

from __future__ import annotations

import asyncio
import time

from flowport.errors import RunEnded
from flowport.execution import Execution
from flowport.replicas import Replica
from flowport.storage import LIVE_STATUSES, Database, NodeRun, Run, get_run

# How long a cancel call waits for the run's replica to record that it stopped.
CANCEL_WAIT_S = 10.0
# How often it looks at the record meanwhile.
CANCEL_POLL_S = 0.05


async def cancel(
    *, account_id: str, run_id: str, db: Database, execution: Execution, replica: Replica
) -> tuple[Run, list[NodeRun]]:
    """The run's record once it has stopped; NotFound for another account's run, RunEnded
    when it had already ended. A run executing elsewhere is cancelled by its replica, told
    through the channel; if that replica does not answer within CANCEL_WAIT_S, the record as
    it stands (the reaper ends the run if its replica died)."""
    run, nodes = await _record(db, account_id, run_id)
    if run.status not in LIVE_STATUSES:
        raise RunEnded(f"the run already {run.status}")
    if not await execution.cancel_here(run_id):
        await replica.publish("cancel", run_id)
        deadline = time.monotonic() + CANCEL_WAIT_S
        while run.status in LIVE_STATUSES and time.monotonic() < deadline:
            await asyncio.sleep(CANCEL_POLL_S)
            run, nodes = await _record(db, account_id, run_id)
        return run, nodes
    return await _record(db, account_id, run_id)


async def _record(db: Database, account_id: str, run_id: str) -> tuple[Run, list[NodeRun]]:
    return await db.run(lambda s: get_run(s, account_id=account_id, run_id=run_id))
