"""ApiKeys: create (the secret shown once), list, revoke, rotate."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import grpc

from flowport.auth import SCOPES
from flowport.convert import timestamp
from flowport.errors import InvalidArgument
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import ApiKey, create_api_key, list_api_keys, revoke_api_key, rotate_api_key
from flowport.storage.models import utc_now
from flowport.v1 import keys_pb2, keys_pb2_grpc

MAX_NAME_LENGTH = 100


class ApiKeysServicer(keys_pb2_grpc.ApiKeysServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def CreateApiKey(
        self, request: keys_pb2.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.CreateApiKeyResponse:
        caller = await self._services.admin(context)
        name = request.name.strip()
        if not name:
            raise InvalidArgument.at("name", "required")
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidArgument.at("name", f"longer than {MAX_NAME_LENGTH} characters")
        scopes = list(dict.fromkeys(request.scopes)) or ["run"]
        for index, scope in enumerate(scopes):
            if scope not in SCOPES:
                raise InvalidArgument.at(
                    f"scopes[{index}]", f"unknown scope {scope!r} (known: {', '.join(SCOPES)})"
                )
        expires_at = (
            request.expires_at.ToDatetime(tzinfo=UTC) if request.HasField("expires_at") else None
        )
        key, secret = await self._services.db.run(
            lambda session: create_api_key(
                session,
                account_id=caller.account_id,
                name=name,
                scopes=scopes,
                expires_at=expires_at,
                workflows=list(request.workflows),
                actor=caller.key_id,
            )
        )
        return keys_pb2.CreateApiKeyResponse(**_with_secret(key, secret))

    @translate_errors
    async def ListApiKeys(
        self, request: keys_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.ListApiKeysResponse:
        caller = await self._services.admin(context)
        keys = await self._services.db.run(
            lambda session: list_api_keys(session, account_id=caller.account_id)
        )
        return keys_pb2.ListApiKeysResponse(keys=[_listed(key) for key in keys])

    @translate_errors
    async def DeleteApiKey(
        self, request: keys_pb2.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.DeleteApiKeyResponse:
        caller = await self._services.admin(context)
        await self._services.db.run(
            lambda session: revoke_api_key(
                session, account_id=caller.account_id, key_id=request.id, actor=caller.key_id
            )
        )
        # Refused from the next call on, on every replica, not only once cached keys expire.
        await self._services.forget_key(request.id)
        return keys_pb2.DeleteApiKeyResponse()

    @translate_errors
    async def RotateApiKey(
        self, request: keys_pb2.RotateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.RotateApiKeyResponse:
        caller = await self._services.admin(context)
        key, secret = await self._services.db.run(
            lambda session: rotate_api_key(
                session,
                account_id=caller.account_id,
                key_id=request.id,
                grace_s=request.grace_s,
                actor=caller.key_id,
            )
        )
        # Every replica looks the old secret up again: it ends with its grace, or now.
        await self._services.forget_key(key.id)
        return keys_pb2.RotateApiKeyResponse(
            **_with_secret(key, secret), previous_key_expires_at=timestamp(key.previous_until)
        )


def _with_secret(key: ApiKey, secret: str) -> dict[str, Any]:
    """The fields of the answer that shows a key's secret, once: on create and on rotate."""
    return {
        "id": key.id,
        "name": key.name,
        "key": secret,
        "prefix": key.prefix,
        "scopes": key.scopes,
        "created_at": timestamp(key.created_at),
        "expires_at": timestamp(key.expires_at),
        "workflows": key.workflows or [],
    }


def _listed(key: ApiKey) -> keys_pb2.ApiKey:
    previous_until = key.previous_until
    if previous_until is not None and previous_until <= utc_now():
        previous_until = None
    return keys_pb2.ApiKey(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=key.scopes,
        created_at=timestamp(key.created_at),
        last_used_at=timestamp(key.last_used_at),
        revoked=key.revoked,
        expires_at=timestamp(key.expires_at),
        workflows=key.workflows or [],
        previous_key_expires_at=timestamp(previous_until),
    )
