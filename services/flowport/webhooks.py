"""Webhooks: one POST per ended run to its `webhook_url`, signed as the Standard Webhooks
spec says (webhook-id, webhook-timestamp, webhook-signature), retried with exponential
backoff and jitter. Each attempt is a job of its own, due when its backoff ends, so retries
go on across restarts and replicas; each is recorded on the run."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from flowport import jsonbody
from flowport.errors import FlowportError, InvalidArgument
from flowport.jobs import Jobs
from flowport.metrics import Metrics
from flowport.outbound import Outbound
from flowport.run_record import run_record_json
from flowport.storage import (
    Database,
    deliveries,
    record_delivery,
    run_and_nodes,
    signing_secret,
    undelivered_runs,
)
from flowport.storage.models import utc_now

log = logging.getLogger(__name__)

DELIVER = "deliver"
# The longest wait between two attempts, however many came before.
MAX_BACKOFF_S = 3600.0
# A run that ended this many attempt timeouts ago without any attempt on record had its
# first one lost (an attempt under way is on record within one timeout); it is scheduled
# again if it ended within a day, this many at a time.
RECOVER_AFTER_TIMEOUTS = 3
RECOVER_WITHIN_S = 86_400.0
RECOVER_BATCH = 100


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    max_attempts: int
    # The wait before the second attempt; each next one waits twice as long (at most
    # MAX_BACKOFF_S), drawn between half and the whole of it.
    backoff_s: float
    timeout_s: float


async def check_webhook_url(url: str, *, account_id: str, db: Database, outbound: Outbound) -> None:
    """InvalidArgument naming `webhook_url` unless the URL is one deliveries may reach (the
    same guard as http nodes') and the account has a secret to sign with."""
    try:
        await outbound.check_url(url)
    except FlowportError as error:
        raise InvalidArgument.at("webhook_url", error.message) from None
    if await db.run(lambda s: signing_secret(s, account_id=account_id)) is None:
        raise InvalidArgument.at(
            "webhook_url",
            "the account has no webhook secret to sign with: POST /v1/webhooks:rotateSecret",
        )


class Deliveries:
    """The deliver job's handler, and the first attempt's scheduling."""

    def __init__(
        self,
        *,
        db: Database,
        jobs: Jobs,
        outbound: Outbound,
        policy: WebhookPolicy,
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._metrics = metrics or Metrics()
        self._jobs = jobs
        self._outbound = outbound
        self._policy = policy

    async def schedule(self, run_id: str) -> None:
        """The run has ended and has a webhook: its first attempt, now. Not raised when it
        fails: runs ended without any attempt are found and scheduled again (`recover`)."""
        try:
            await self._jobs.defer(DELIVER, {"run_id": run_id, "attempt": 1}, lock=_lock(run_id))
        except Exception:
            log.warning("webhook of run %s: could not schedule it", run_id, exc_info=True)

    async def recover(self) -> None:
        """Runs on every replica's reaper beat: a first attempt for each run that ended
        without one (its replica stopped before scheduling it, or a reaper or a cancel of a
        queued run ended it)."""
        for run_id in await self._db.run(
            lambda s: undelivered_runs(
                s,
                ended_before_s=RECOVER_AFTER_TIMEOUTS * self._policy.timeout_s,
                ended_within_s=RECOVER_WITHIN_S,
                limit=RECOVER_BATCH,
            )
        ):
            await self.schedule(run_id)

    async def deliver(self, args: dict[str, Any]) -> None:
        run_id, attempt = str(args["run_id"]), int(args["attempt"])
        run, nodes = await self._db.run(lambda s: run_and_nodes(s, run_id=run_id))
        if run.webhook_url is None:
            return
        secret = await self._db.run(lambda s: signing_secret(s, account_id=run.account_id))
        if secret is None:
            await self._recorded(run_id, attempt, None, "the account has no webhook secret")
            self._metrics.webhook_delivery("gave_up")
            return
        sent = await self._db.run(lambda s: deliveries(s, run_id=run_id))
        if any(d.status_code is not None and 200 <= d.status_code < 300 for d in sent):
            return  # delivered already: this job ran twice
        record = run_record_json(run, nodes, sent)
        body = jsonbody.dumps({"type": "run.finished", "run": record})
        status_code, error = await self._post(run.webhook_url, run_id, secret, body)
        await self._recorded(run_id, attempt, status_code, error)
        if status_code is not None and 200 <= status_code < 300:
            self._metrics.webhook_delivery("delivered")
            return
        if attempt < self._policy.max_attempts:
            self._metrics.webhook_delivery("failed")
            at = utc_now() + timedelta(seconds=self._backoff_s(attempt))
            await self._jobs.defer(
                DELIVER, {"run_id": run_id, "attempt": attempt + 1}, at=at, lock=_lock(run_id)
            )
        else:
            self._metrics.webhook_delivery("gave_up")
            log.warning("webhook of run %s: gave up after %d attempts", run_id, attempt)

    async def _post(
        self, url: str, run_id: str, secret: str, body: bytes
    ) -> tuple[int | None, str | None]:
        # One id for every attempt: the receiver tells a retry from a new delivery by it.
        now = utc_now()
        signature = Webhook(secret).sign(run_id, now, body.decode())
        headers = {
            "content-type": "application/json",
            "webhook-id": run_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            response = await self._outbound.fetch(
                url,
                method="POST",
                headers=headers,
                content=body,
                timeout_s=self._policy.timeout_s,
                follow_redirects=False,
            )
        except FlowportError as error:
            return None, error.message
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, f"answered {response.status} {response.reason}"

    async def _recorded(
        self, run_id: str, attempt: int, status_code: int | None, error: str | None
    ) -> None:
        await self._db.run(
            lambda s: record_delivery(
                s, run_id=run_id, attempt=attempt, status_code=status_code, error=error
            )
        )

    def _backoff_s(self, attempt: int) -> float:
        """Exponential, with "equal jitter": half of it fixed, half drawn at random, so that
        the receivers of many failed deliveries are not all called again at once."""
        full = min(MAX_BACKOFF_S, self._policy.backoff_s * 2 ** (attempt - 1))
        return full / 2 + random.uniform(0, full / 2)


def _lock(run_id: str) -> str:
    """One attempt of a run's webhook waits at a time, however often one is scheduled."""
    return f"webhook {run_id}"
