"""The run path in one process, as `create_server` wires it, without gRPC, Envoy or a
replica's channel: for tests of what happens between admission and the record."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from flowport.auth import Authenticator
from flowport.engine import RunSucceeded
from flowport.jobs import open_jobs
from flowport.outbound import FetchPolicy, Outbound
from flowport.run_path import RunPath
from flowport.settings import Settings
from flowport.storage import Database, create_api_key


@contextlib.asynccontextmanager
async def local_run_path(
    db: Database, data_dir: Path, *, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[RunPath]:
    settings = Settings(data_dir=data_dir)
    outbound = Outbound(FetchPolicy.from_settings(settings))
    # Jobs are deferred to the database, never taken here.
    jobs = open_jobs(db, replica_id="rep_test", concurrency=0, grace_s=0.0, lease_s=30.0)
    runs = RunPath.build(
        settings, db, replica_id="rep_test", llm=None, outbound=outbound, jobs=jobs, clock=clock
    )
    try:
        yield runs
    finally:
        await runs.recorder.close()
        await outbound.aclose()


async def run_once(
    runs: RunPath, db: Database, account_id: str, workflow_id: str, raw_input: object
) -> RunSucceeded:
    """A blocking run with a new key of `account_id`."""
    async with db.session() as session:
        _, secret = await create_api_key(session, account_id=account_id, name="k", scopes=["run"])
    principal = await Authenticator(db).authenticate(secret)
    run = await runs.admission.admit(
        principal, workflow_id=workflow_id, raw_input=raw_input, session_id=None, mode="blocking"
    )
    return await runs.execution.run_to_end(run)
