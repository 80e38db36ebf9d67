"""kamicore.v1.Webhooks: register, update, list and delete webhook endpoints. A signing secret
goes in and never comes out: every reply is built by webhook_to_wire, which has no secret to
copy (the domain answers carry none)."""

from __future__ import annotations

from ..domain import webhooks
from ..domain.webhooks import Webhook
from ..statuses import WebhookScope
from ..v1 import webhooks_pb2, webhooks_pb2_grpc
from .gate import actor
from .services import Services

_SCOPES = {WebhookScope.ALL: webhooks.ALL, WebhookScope.CHANNEL: webhooks.CHANNEL,
           WebhookScope.PARTNER: webhooks.PARTNER}
_SCOPE_NUMBERS = {name: number for number, name in _SCOPES.items()}


def webhook_from_wire(message: webhooks_pb2.Webhook) -> Webhook:
    """A request's endpoint; an unknown scope becomes "" (refused by name by validate)."""
    return Webhook(webhook_id=message.webhook_id, url=message.url,
                   scope=_SCOPES.get(message.scope, ""), scope_id=message.scope_id,
                   event_types=tuple(message.event_types), retry_seconds=message.retry_seconds,
                   enabled=message.enabled, secret=message.signing_secret)


def webhook_to_wire(webhook: Webhook | None) -> webhooks_pb2.Webhook | None:
    """An endpoint as replies show it: never with its secret."""
    if webhook is None:
        return None
    return webhooks_pb2.Webhook(
        webhook_id=webhook.webhook_id, url=webhook.url, scope=_SCOPE_NUMBERS[webhook.scope],
        scope_id=webhook.scope_id, event_types=webhook.event_types,
        retry_seconds=webhook.retry_seconds, enabled=webhook.enabled,
        created_ms=webhook.created_ms, updated_ms=webhook.updated_ms)


def delivery_to_wire(webhook: Webhook, delivery: webhooks.Delivery, head: int,
                     now_ms: int) -> webhooks_pb2.WebhookDelivery:
    return webhooks_pb2.WebhookDelivery(
        state=delivery.state(webhook, now_ms), last_success_ms=delivery.last_success_ms,
        consecutive_failures=delivery.consecutive_failures, last_error=delivery.last_error,
        next_try_ms=delivery.next_try_ms, last_event_id=delivery.last_event_id,
        cursor=delivery.cursor, backlog=max(0, head - delivery.cursor),
        failing_since_ms=delivery.failing_since_ms)


class WebhooksService(webhooks_pb2_grpc.WebhooksServicer):
    def __init__(self, services: Services):
        self.s = services
        self.webhooks = webhooks.Webhooks(services.engine)

    async def RegisterWebhook(self, request, context):
        status, webhook = await self.webhooks.register(webhook_from_wire(request.webhook),
                                                       actor())
        self.s.outcome("RegisterWebhook", status)
        return webhooks_pb2.RegisterWebhookResponse(status=status,
                                                    webhook=webhook_to_wire(webhook))

    async def UpdateWebhook(self, request, context):
        status, webhook = await self.webhooks.update(webhook_from_wire(request.webhook),
                                                     actor())
        self.s.outcome("UpdateWebhook", status)
        return webhooks_pb2.UpdateWebhookResponse(status=status,
                                                  webhook=webhook_to_wire(webhook))

    async def ListWebhooks(self, request, context):
        found, head, token = webhooks.page(self.s.engine, request.page_size, request.page_token)
        now_ms = self.s.engine.now_ms()
        return webhooks_pb2.ListWebhooksResponse(
            webhooks=[webhooks_pb2.WebhookStatus(
                webhook=webhook_to_wire(webhook),
                delivery=delivery_to_wire(webhook, delivery, head, now_ms))
                for webhook, delivery in found],
            next_page_token=token)

    async def DeleteWebhook(self, request, context):
        status = await self.webhooks.delete(request.webhook_id, actor())
        self.s.outcome("DeleteWebhook", status)
        return webhooks_pb2.DeleteWebhookResponse(status=status)


__all__ = ["WebhooksService"]
