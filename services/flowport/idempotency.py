"""Idempotency-Key on run calls: the same account, key and body within IDEMPOTENCY_WINDOW_S
are the same run. The first call runs it; a repeat is answered from that run (its recorded
answer, its events, or its 202), and the same key with another body is refused (422)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flowport.errors import IdempotencyKeyReused, InvalidArgument, NotFound, Unavailable
from flowport.ids import new_id
from flowport.storage import (
    FINAL_STATUSES,
    Database,
    NodeRun,
    Run,
    claim_key,
    get_run,
    key_run,
    release_key,
)

if TYPE_CHECKING:
    from flowport.admission import PreparedRun

IDEMPOTENCY_WINDOW_S = 86_400.0
MAX_KEY_LENGTH = 255
# How often a repeat looks at the first call's run while it waits for it.
POLL_S = 0.05
# How long a repeat waits for the first call's run to begin (its files fetched, its row
# written) before it gives up.
START_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Claim:
    """The run a call with a key is: its own, new (`first`), or the first call's."""

    key: str
    run_id: str
    first: bool


@dataclass(frozen=True, slots=True)
class Repeat:
    """A call whose key named an earlier call's run: it is answered from that run."""

    run_id: str


def fingerprint(*parts: str | bytes) -> str:
    """What makes two calls the same: the surface, the route and the body, as sent."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


class Idempotency:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def admit(
        self,
        account_id: str,
        key: str,
        fingerprint: str,
        admit: Callable[[str], Awaitable[PreparedRun]],
    ) -> PreparedRun | Repeat:
        """The first call with the key is admitted (`admit(run_id)`) as the key's run; a
        call with it again is a Repeat of that run once its row exists. A first call that
        was refused frees the key, so that a retry after fixing the call can run."""
        while True:
            claim = await self.claim(account_id, key, fingerprint)
            if claim.first:
                try:
                    return await admit(claim.run_id)
                except BaseException:
                    await asyncio.shield(self.release(account_id, claim))
                    raise
            if await self.started(account_id, claim):
                return Repeat(claim.run_id)

    async def claim(self, account_id: str, key: str, fingerprint: str) -> Claim:
        """The key is taken for a new run id, or it names the first call's run; another
        body with it is IdempotencyKeyReused."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidArgument.at(
                "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} printable characters"
            )
        run_id = new_id("run", 20)
        first = await self._db.run(
            lambda s: claim_key(
                s,
                account_id=account_id,
                key=key,
                fingerprint=fingerprint,
                run_id=run_id,
                window_s=IDEMPOTENCY_WINDOW_S,
            )
        )
        if first is None:
            return Claim(key, run_id, first=True)
        if first.fingerprint != fingerprint:
            raise IdempotencyKeyReused("Idempotency-Key was used with another body")
        return Claim(key, first.run_id, first=False)

    async def release(self, account_id: str, claim: Claim) -> None:
        """The claim's call was refused before its run began: the key is free for a retry."""
        await self._db.run(
            lambda s: release_key(s, account_id=account_id, key=claim.key, run_id=claim.run_id)
        )

    async def started(self, account_id: str, claim: Claim) -> bool:
        """Waits until the first call's run has its row: True; False if that call was
        refused meanwhile (the key is free again: claim it anew)."""
        deadline = time.monotonic() + START_WAIT_S
        while time.monotonic() < deadline:
            try:
                await self._db.run(lambda s: get_run(s, account_id=account_id, run_id=claim.run_id))
                return True
            except NotFound:
                pass
            named = await self._db.run(lambda s: key_run(s, account_id=account_id, key=claim.key))
            if named != claim.run_id:
                return False
            await asyncio.sleep(POLL_S)
        raise Unavailable(
            f"the first call with this Idempotency-Key did not begin its run within "
            f"{START_WAIT_S:.0f} s; try again"
        )

    async def ended(self, account_id: str, run_id: str) -> tuple[Run, list[NodeRun]]:
        """The first call's run once it has ended (its row exists: `started`)."""
        while True:
            run, nodes = await self._db.run(
                lambda s: get_run(s, account_id=account_id, run_id=run_id)
            )
            if run.status in FINAL_STATUSES:
                return run, nodes
            await asyncio.sleep(POLL_S)
