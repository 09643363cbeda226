"""Audit: the account's administrative changes, newest first, a page at a time."""

from __future__ import annotations

import base64
import binascii

import grpc

from flowport.convert import struct, timestamp
from flowport.errors import InvalidArgument
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import audit_page
from flowport.v1 import audit_pb2, audit_pb2_grpc

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Marks the tokens this service made, so that any other text is refused rather than read.
_TOKEN_PREFIX = b"audit:"


class AuditServicer(audit_pb2_grpc.AuditServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb2.ListAuditEventsResponse:
        caller = await self._services.admin(context)
        if not 0 <= request.limit <= MAX_LIMIT:
            raise InvalidArgument.at("limit", f"must be between 1 and {MAX_LIMIT}")
        limit = request.limit or DEFAULT_LIMIT
        before = _read_token(request.page_token) if request.page_token else None
        events, next_before = await self._services.db.run(
            lambda session: audit_page(
                session, account_id=caller.account_id, limit=limit, before=before
            )
        )
        return audit_pb2.ListAuditEventsResponse(
            events=[
                audit_pb2.AuditEvent(
                    at=timestamp(event.at),
                    key_id=event.key_id,
                    action=event.action,
                    target=event.target,
                    detail=struct(event.detail),
                )
                for event in events
            ],
            next_page_token="" if next_before is None else _token(next_before),
        )


def _token(before: int) -> str:
    """Opaque to clients: what it holds may change without notice."""
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + str(before).encode()).decode().rstrip("=")


def _read_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    number = raw[len(_TOKEN_PREFIX) :]
    if not raw.startswith(_TOKEN_PREFIX) or not number.isdigit():
        raise InvalidArgument.at("page_token", "not a token this call gave")
    return int(number)
