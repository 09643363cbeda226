"""One replica's run path, wired in the order a run goes through it: the catalog (which
version), admission (may it run), execution (run it), the recorder (what happened); and
for the runs nobody waits for, the background runs and webhook deliveries its jobs do."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowport.admission import Admission
from flowport.background import BackgroundRuns
from flowport.catalog import Catalog
from flowport.engine import LlmClient
from flowport.execution import Execution
from flowport.idempotency import IDEMPOTENCY_WINDOW_S
from flowport.jobs import Jobs
from flowport.metrics import Metrics
from flowport.outbound import Outbound
from flowport.policy import ContentPolicy
from flowport.settings import Settings
from flowport.storage import Database, Recorder
from flowport.webhooks import Deliveries, WebhookPolicy

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


@dataclass(frozen=True, slots=True)
class RunPath:
    catalog: Catalog
    recorder: Recorder
    admission: Admission
    execution: Execution
    background: BackgroundRuns
    webhooks: Deliveries

    @classmethod
    def build(
        cls,
        settings: Settings,
        db: Database,
        *,
        replica_id: str,
        llm: LlmClient | None,
        outbound: Outbound,
        jobs: Jobs,
        on_logged: Callable[[list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
    ) -> RunPath:
        """`on_logged(run_ids)` after each commit that grew those runs' logs. Without
        `metrics`, the run path counts into a registry of its own that nobody serves."""
        metrics = metrics or Metrics()
        policy = ContentPolicy.from_file(settings.content_policy)
        catalog = Catalog(db, clock=clock)
        recorder = Recorder(db, on_logged=on_logged)
        admission = Admission(
            db=db,
            catalog=catalog,
            recorder=recorder,
            jobs=jobs,
            policy=policy,
            outbound=outbound,
            replica_id=replica_id,
            session_ttl_s=settings.session_ttl_s,
            max_queued_per_account=settings.max_queued_per_account,
            clock=clock,
        )
        webhooks = Deliveries(
            db=db,
            jobs=jobs,
            outbound=outbound,
            policy=WebhookPolicy(
                max_attempts=settings.webhook_max_attempts,
                backoff_s=settings.webhook_backoff_s,
                timeout_s=settings.webhook_timeout_s,
            ),
            metrics=metrics,
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
            webhooks=webhooks,
            metrics=metrics,
            tracer=tracer,
        )
        background = BackgroundRuns(
            db=db,
            jobs=jobs,
            catalog=catalog,
            execution=execution,
            outbound=outbound,
            replica_id=replica_id,
            session_ttl_s=settings.session_ttl_s,
            idempotency_window_s=IDEMPOTENCY_WINDOW_S,
            lease_s=settings.run_lease_s,
        )
        return cls(
            catalog=catalog,
            recorder=recorder,
            admission=admission,
            execution=execution,
            background=background,
            webhooks=webhooks,
        )
