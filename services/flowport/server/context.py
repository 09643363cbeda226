"""What the servicers share: the service's parts, and the caller behind a request."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from flowport.auth import Authenticator, Principal, key_from_metadata
from flowport.ratelimit import RateLimiter
from flowport.running import RunService
from flowport.settings import Settings
from flowport.storage import Database


@dataclass(frozen=True, slots=True)
class Services:
    """The parts every servicer may use, built once by `create_server`."""

    settings: Settings
    db: Database
    auth: Authenticator
    limiter: RateLimiter
    runs: RunService

    async def caller(self, context: grpc.aio.ServicerContext) -> Principal:
        """The authenticated key behind a call, once it is within its rate limit."""
        metadata = context.invocation_metadata() or ()
        principal = await self.auth.authenticate(key_from_metadata(metadata))
        await self.limiter.check(principal.key_id)
        return principal

    async def admin(self, context: grpc.aio.ServicerContext) -> Principal:
        """The caller, who must hold the admin scope (every management call)."""
        principal = await self.caller(context)
        principal.require("admin")
        return principal
