"""One replica's run path, wired in the order a run goes through it: the catalog (which
version), admission (may it run), execution (run it), the recorder (what happened)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flowport.admission import Admission
from flowport.catalog import Catalog
from flowport.engine import LlmClient
from flowport.execution import Execution
from flowport.outbound import Outbound
from flowport.policy import ContentPolicy
from flowport.settings import Settings
from flowport.storage import Database, Recorder


@dataclass(frozen=True, slots=True)
class RunPath:
    catalog: Catalog
    recorder: Recorder
    admission: Admission
    execution: Execution

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        *,
        replica_id: str,
        llm: LlmClient | None,
        outbound: Outbound,
        on_logged: Callable[[list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> RunPath:
        """`on_logged(run_ids)` after each commit that grew those runs' logs."""
        policy = ContentPolicy.from_file(settings.content_policy)
        catalog = Catalog(db, clock=clock)
        recorder = Recorder(db, on_logged=on_logged)
        admission = Admission(
            catalog=catalog,
            recorder=recorder,
            policy=policy,
            outbound=outbound,
            replica_id=replica_id,
            session_ttl_s=settings.session_ttl_s,
            clock=clock,
        )
        execution = Execution(
            db=db,
            recorder=recorder,
            llm=llm,
            outbound=outbound,
            policy=policy,
            default_model=settings.llm_model,
            log_max_bytes=settings.run_log_max_bytes,
            resume_s=settings.stream_resume_s,
        )
        return cls(catalog=catalog, recorder=recorder, admission=admission, execution=execution)
