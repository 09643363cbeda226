"""ApiKeys: create (the secret shown once), list, revoke."""

from __future__ import annotations

import grpc

from flowport.auth import SCOPES
from flowport.convert import timestamp
from flowport.errors import InvalidArgument
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import create_api_key, list_api_keys, revoke_api_key
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
        key, secret = await self._services.db.run(
            lambda session: create_api_key(
                session, account_id=caller.account_id, name=name, scopes=scopes
            )
        )
        return keys_pb2.CreateApiKeyResponse(
            id=key.id,
            name=key.name,
            key=secret,
            prefix=key.prefix,
            scopes=key.scopes,
            created_at=timestamp(key.created_at),
        )

    @translate_errors
    async def ListApiKeys(
        self, request: keys_pb2.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.ListApiKeysResponse:
        caller = await self._services.admin(context)
        keys = await self._services.db.run(
            lambda session: list_api_keys(session, account_id=caller.account_id)
        )
        return keys_pb2.ListApiKeysResponse(
            keys=[
                keys_pb2.ApiKey(
                    id=key.id,
                    name=key.name,
                    prefix=key.prefix,
                    scopes=key.scopes,
                    created_at=timestamp(key.created_at),
                    last_used_at=timestamp(key.last_used_at),
                    revoked=key.revoked,
                )
                for key in keys
            ]
        )

    @translate_errors
    async def DeleteApiKey(
        self, request: keys_pb2.DeleteApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> keys_pb2.DeleteApiKeyResponse:
        caller = await self._services.admin(context)
        await self._services.db.run(
            lambda session: revoke_api_key(session, account_id=caller.account_id, key_id=request.id)
        )
        # Refused from the next call on, on every replica, not only once cached keys expire.
        await self._services.forget_key(request.id)
        return keys_pb2.DeleteApiKeyResponse()
