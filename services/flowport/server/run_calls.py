"""What every run surface (FlowAI's and LinkAI's routes, Run and RunStream) does alike past
its own wire format: the Idempotency-Key, and the answers of a background run and of a
repeated call."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from flowport import idempotency, run_record
from flowport.admission import PreparedRun
from flowport.auth import Principal
from flowport.engine import RunSucceeded
from flowport.idempotency import Repeat
from flowport.server.context import Services
from flowport.server.status import Metadata as CallMetadata
from flowport.server.status import is_rest
from flowport.storage import get_run

IDEMPOTENCY_METADATA = "idempotency-key"

Metadata = tuple[tuple[str, str], ...]


async def run_caller(
    services: Services, context: grpc.aio.ServicerContext
) -> tuple[Principal, str | None]:
    """The caller of a run call (Services.caller) and its Idempotency-Key, from one read of
    the call's metadata: grpc.aio builds the tuple afresh from the C array on every
    `invocation_metadata()`."""
    metadata = context.invocation_metadata() or ()
    return await services.caller(context, metadata), idempotency_key(metadata)


def idempotency_key(metadata: CallMetadata) -> str | None:
    """The call's `Idempotency-Key` header (metadata `idempotency-key`), if it has one."""
    for name, value in metadata:
        if name == IDEMPOTENCY_METADATA and isinstance(value, str):
            return value
    return None


async def admit_once(
    services: Services,
    caller: Principal,
    key: str | None,
    call: tuple[str | bytes, ...],
    admit: Callable[[str | None], Awaitable[PreparedRun]],
    *,
    workflow_id: str,
) -> PreparedRun | Repeat:
    """The call admitted (`admit(run_id)`, a run id the key chose or None); with an
    Idempotency-Key (`key`), `call` (its surface, route and body) says whether a call with the key
    came before: then it is a Repeat of that call's run, or refused for another body. A key
    limited to other workflows is refused first, a repeat included."""
    caller.require("run")
    caller.may_run(workflow_id)
    if key is None:
        return await admit(None)
    return await services.idempotency.admit(
        caller.account_id, key, idempotency.fingerprint(*call), admit
    )


async def version_of(services: Services, admitted: PreparedRun | Repeat, account_id: str) -> int:
    """The version the run runs: a repeated call's is on its run's record."""
    if isinstance(admitted, PreparedRun):
        return admitted.version
    record, _ = await services.db.run(
        lambda s: get_run(s, account_id=account_id, run_id=admitted.run_id)
    )
    return record.version


def version_header(version: int) -> Metadata:
    """Which version ran, on every answer of a run."""
    return (("x-workflow-version", str(version)),)


async def outcome(
    services: Services, admitted: PreparedRun | Repeat, account_id: str, *, detached: bool
) -> tuple[RunSucceeded, str]:
    """A blocking call's answer, and the run's session: the run executed here to its end
    (`detached`: in a task of its own), or a repeated call's run once it has ended. A run
    that failed raises its error, as recorded. A call with an Idempotency-Key is detached: its
    run goes on to its end if its caller leaves, so that the retry is answered with its
    outcome."""
    if isinstance(admitted, Repeat):
        record, nodes = await services.idempotency.ended(account_id, admitted.run_id)
        ended = run_record.outcome(record, nodes)
        if not isinstance(ended, RunSucceeded):
            raise ended.error
        return ended, record.session_id or ""
    execution = services.execution
    result = await (execution.run_detached if detached else execution.run_to_end)(admitted)
    return result, admitted.session_id


async def replayed(services: Services, account_id: str, run_id: str) -> AsyncIterator[bytes]:
    """A repeated stream: the first call's run's frames, as its events route serves them."""
    async for data in services.run_log.follow(account_id=account_id, run_id=run_id, after=0):
        yield data


def accepted(run_id: str) -> dict[str, str]:
    """A background run's answer: the run as accepted, and where to follow it."""
    return {"run_id": run_id, "status": "queued", "events_url": f"/v1/runs/{run_id}/events"}


def accepted_headers(run_id: str, *, rest: bool = True) -> Metadata:
    """202 (through Envoy) and where the run's record is."""
    location = (("location", f"/v1/runs/{run_id}"),)
    return ((("x-http-status", "202"),) if rest else ()) + location


def accepted_metadata(context: grpc.aio.ServicerContext, run_id: str) -> Metadata:
    """`accepted_headers` for a typed call: 202 only when it came as REST through Envoy."""
    return accepted_headers(run_id, rest=is_rest(context))
