"""Accounts: the caller's account and the run credits it has left."""

from __future__ import annotations

import grpc

from flowport.convert import timestamp
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import get_account
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
