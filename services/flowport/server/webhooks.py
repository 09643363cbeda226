"""Webhooks: the account's signing secret, made or rotated (shown once)."""

from __future__ import annotations

import grpc

from flowport.convert import timestamp
from flowport.server.context import Services
from flowport.server.status import translate_errors
from flowport.storage import rotate_secret
from flowport.v1 import webhooks_pb2, webhooks_pb2_grpc


class WebhooksServicer(webhooks_pb2_grpc.WebhooksServicer):
    def __init__(self, services: Services) -> None:
        self._services = services

    @translate_errors
    async def RotateWebhookSecret(
        self, request: webhooks_pb2.RotateWebhookSecretRequest, context: grpc.aio.ServicerContext
    ) -> webhooks_pb2.WebhookSecret:
        caller = await self._services.admin(context)
        secret = await self._services.db.run(
            lambda session: rotate_secret(
                session, account_id=caller.account_id, actor=caller.key_id
            )
        )
        return webhooks_pb2.WebhookSecret(
            secret=secret.secret, created_at=timestamp(secret.created_at)
        )
