"""Accounts: the caller's account, the run credits it has left, and the origins whose web pages
may call with its keys (CORS)."""

from __future__ import annotations

import grpc

from flowport.convert import timestamp
from flowport.cors import parse_origins
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import get_account, set_allowed_origins
from flowport.v1 import account_pb2, account_pb2_grpc


class AccountsServicer(account_pb2_grpc.AccountsServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def GetAccount(
        self, request: account_pb2.GetAccountRequest, context: grpc.aio.ServicerContext
    ) -> account_pb2.Account:
        caller = await self._services.caller(context)
        account = await self._services.db.run(
            lambda session: get_account(session, account_id=caller.account_id)
        )
        answer = account_pb2.Account(
            id=account.id, name=account.name, created_at=timestamp(account.created_at)
        )
        if account.credits is not None:
            answer.credits = account.credits
        return answer

    @translate_errors
    async def GetCors(
        self, request: account_pb2.GetCorsRequest, context: grpc.aio.ServicerContext
    ) -> account_pb2.Cors:
        caller = await self._services.admin(context)
        account = await self._services.db.run(
            lambda session: get_account(session, account_id=caller.account_id)
        )
        return account_pb2.Cors(allowed_origins=account.allowed_origins)

    @translate_errors
    async def SetCors(
        self, request: account_pb2.SetCorsRequest, context: grpc.aio.ServicerContext
    ) -> account_pb2.Cors:
        caller = await self._services.admin(context)
        origins = parse_origins(request.allowed_origins)
        account = await self._services.db.run(
            lambda session: set_allowed_origins(
                session, account_id=caller.account_id, origins=origins, actor=caller.key_id
            )
        )
        await self._services.cors_changed(account.id)
        return account_pb2.Cors(allowed_origins=account.allowed_origins)
