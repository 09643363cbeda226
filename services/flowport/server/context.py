"""What the servicers share: the service's parts, and the caller behind a request."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from flowport.admission import Admission
from flowport.auth import Authenticator, Principal, key_from_metadata
from flowport.catalog import Catalog
from flowport.cors import ORIGIN_HEADER, Origins
from flowport.execution import Execution
from flowport.idempotency import Idempotency
from flowport.ratelimit import RateLimiter
from flowport.replicas import Replica
from flowport.run_log import RunLogReader
from flowport.server.status import Metadata
from flowport.settings import Settings
from flowport.storage import Database
from flowport.webhooks import Deliveries


@dataclass(frozen=True, slots=True)
class Services:
    """The parts every servicer may use, built once by `create_server`."""

    settings: Settings
    db: Database
    auth: Authenticator
    limiter: RateLimiter
    catalog: Catalog
    admission: Admission
    execution: Execution
    replica: Replica
    run_log: RunLogReader
    idempotency: Idempotency
    webhooks: Deliveries
    origins: Origins

    async def caller(
        self,
        context: grpc.aio.ServicerContext,
        metadata: Metadata | None = None,
    ) -> Principal:
        """The authenticated key behind a call, once it is within its rate limit and, for a
        browser's cross-origin call, when its account allows the page's origin. `metadata`:
        the call's, when the servicer has read it already (each read builds it anew)."""
        if metadata is None:
            metadata = context.invocation_metadata() or ()
        principal = await self.auth.authenticate(key_from_metadata(metadata))
        await self.limiter.check(principal.key_id)
        origin = next((v for k, v in metadata if k == ORIGIN_HEADER and isinstance(v, str)), None)
        if origin:
            await self.origins.check(principal.account_id, origin)
        return principal

    async def admin(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller, who must hold the admin scope (every management call)."""
        principal = await self.caller(context)
        principal.require("admin")
        return principal

    async def forget_workflow(self, workflow_id: str) -> None:
        """The workflow was saved or published: every replica reads it afresh."""
        self.catalog.forget(workflow_id)
        await self.replica.publish("forget-workflow", workflow_id)

    async def cors_changed(self, account_id: str) -> None:
        """The account's allowed origins changed: every replica checks calls and rewrites its
        Envoy's routes by the new list."""
        await self.origins.changed(account_id)
        await self.replica.publish("cors-changed", account_id)

    async def forget_key(self, key_id: str) -> None:
        """The key was revoked: every replica refuses it from the next call on."""
        self.auth.forget(key_id)
        await self.replica.publish("forget-key", key_id)
