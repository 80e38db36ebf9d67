"""Webhook endpoints: where kamicore POSTs business events, and how far each has got.

An endpoint is one record of the `webhooks` table: its URL, scope (whose events: every one, a
sales channel's, or a partner's - what kamicore.domain.events.visible admits for that kind of
key), event types, retry window, whether it is enabled, and its signing secret, sealed by the
engine like a supplier's (kamicore.domain.suppliers) and opened only in memory. The secret is
write-only over the API: no reply, log, metric or error carries it.

`webhook_deliveries` holds each endpoint's delivery state, written by the dispatcher's commits
(kamicore.runtime.webhooks): the cursor (every event up to it was acknowledged with a 2xx or is
not for this endpoint), the last event acknowledged, and the current run of failures. The
cursor only moves forward, and only in a commit after the acknowledgement: delivery is at
least once, and a crash repeats at most the events after the last committed cursor.

Domain code: no *_pb2. `view` is a plan's Transaction or the Engine (a snapshot read).
"""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlsplit

from .. import auth, limits
from ..engine import Engine, InvalidArgument
from ..engine.validate import integer, text
from ..keyring import constant_time_equal
from ..statuses import (
    DeleteWebhookStatus, RegisterWebhookStatus, UpdateWebhookStatus, WebhookDeliveryState,
)
from . import events, sealed_records

TABLE = "webhooks"
DELIVERIES_TABLE = "webhook_deliveries"
ALL, CHANNEL, PARTNER = "all", "channel", "partner"
SCOPES = (ALL, CHANNEL, PARTNER)
assert len(events.TYPES) <= limits.webhook_event_types_max \
    and max(map(len, events.TYPES)) <= limits.event_type_bytes_max, "an endpoint's types fit"


@dataclasses.dataclass(frozen=True)
class Webhook:
    webhook_id: str
    url: str
    scope: str  # ALL | CHANNEL | PARTNER
    scope_id: str = ""  # CHANNEL: the channel; PARTNER: the partner key's id
    event_types: tuple[str, ...] = ()  # empty: every type
    retry_seconds: int = limits.webhook_retry_seconds_default
    enabled: bool = True
    secret: bytes = dataclasses.field(default=b"", repr=False)  # unsealed in memory only
    created_ms: int = 0
    updated_ms: int = 0

    def definition(self) -> Webhook:
        """What a retry of RegisterWebhook must repeat (the secret is compared apart, in
        constant time): everything but the timestamps."""
        return dataclasses.replace(self, secret=b"", created_ms=0, updated_ms=0)

    def wants(self, event: events.Event) -> bool:
        """Whether `event` is for this endpoint: its scope may see it and its types list it."""
        if self.event_types and event.type not in self.event_types:
            return False
        if self.scope == CHANNEL:
            return events.visible(event, "storefront", self.scope_id,
                                  f"storefront:{self.scope_id}")
        if self.scope == PARTNER:
            return events.visible(event, "partner", "", f"partner:{self.scope_id}")
        return events.visible(event, "admin", "", "")


@dataclasses.dataclass(frozen=True)
class Delivery:
    """An endpoint's delivery state (see the module docstring)."""

    cursor: int = 0
    last_event_id: int = 0
    last_success_ms: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    next_try_ms: int = 0
    failing_since_ms: int = 0
    created_ms: int = 0  # of the endpoint it belongs to: a re-registered id starts afresh

    def state(self, webhook: Webhook, now_ms: int) -> WebhookDeliveryState:
        if not webhook.enabled:
            return WebhookDeliveryState.DISABLED
        if not self.consecutive_failures:
            return WebhookDeliveryState.HEALTHY
        if self.failing(webhook, now_ms):
            return WebhookDeliveryState.FAILING
        return WebhookDeliveryState.RETRYING

    def failing(self, webhook: Webhook, now_ms: int) -> bool:
        """Failing for longer than the endpoint's retry window at `now_ms`."""
        return bool(self.failing_since_ms) \
            and now_ms - self.failing_since_ms > webhook.retry_seconds * 1000


def _purpose(webhook_id: str) -> bytes:
    return b"webhook:" + webhook_id.encode()


def _build(fields: dict, secret: bytes) -> Webhook:
    fields["event_types"] = tuple(fields["event_types"])
    return Webhook(secret=secret, **fields)


# a stored endpoint with its secret opened; one decoded copy per stored value
_decode = sealed_records.Decoder(_build, lambda fields: _purpose(fields["webhook_id"]),
                                 limits.webhooks_max)


# -- validation ---------------------------------------------------------------------------------

def _url(url: str, field: str) -> None:
    text(url, field, limits.webhook_url_bytes_max)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise InvalidArgument(field, "is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(field, "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidArgument(field, "must not hold a user or password: events are signed "
                              "with signing_secret")
    if any(character.isspace() for character in url) or parts.fragment:
        raise InvalidArgument(field, "must not hold spaces or a #fragment")


def validate(webhook: Webhook, field: str = "webhook", secret_required: bool = True
             ) -> Webhook:
    """A clean copy of `webhook` (timestamps cleared, retry window defaulted), or
    InvalidArgument naming the field. An empty secret is allowed only when not
    `secret_required` (an update keeping it)."""
    text(webhook.webhook_id, f"{field}.webhook_id", limits.name_bytes_max)
    _url(webhook.url, f"{field}.url")
    if webhook.scope not in SCOPES:
        raise InvalidArgument(f"{field}.scope", "must be ALL, CHANNEL or PARTNER")
    if webhook.scope == ALL:
        if webhook.scope_id:
            raise InvalidArgument(f"{field}.scope_id", "must be empty for scope ALL")
    else:
        text(webhook.scope_id, f"{field}.scope_id", limits.binding_bytes_max)
    seen = set()
    for index, name in enumerate(webhook.event_types):
        if name not in events.TYPES:
            raise InvalidArgument(f"{field}.event_types[{index}]",
                                  f"must be one of {', '.join(events.TYPES)}")
        if name in seen:
            raise InvalidArgument(f"{field}.event_types[{index}]", "is listed twice")
        seen.add(name)
    retry_seconds = webhook.retry_seconds or limits.webhook_retry_seconds_default
    integer(retry_seconds, f"{field}.retry_seconds", limits.webhook_retry_seconds_min,
            limits.webhook_retry_seconds_max)
    sealed_records.check_secret(webhook.secret, f"{field}.signing_secret", secret_required,
                                limits.webhook_secret_bytes_min, limits.webhook_secret_bytes_max)
    return dataclasses.replace(webhook, enabled=bool(webhook.enabled),
                               event_types=tuple(webhook.event_types),
                               retry_seconds=retry_seconds, created_ms=0, updated_ms=0)


# -- reads --------------------------------------------------------------------------------------

def read(view, webhook_id: str) -> Webhook | None:
    """An endpoint (secret opened) as `view` sees it."""
    value = view.get(TABLE, webhook_id.encode())
    return _decode(view, value) if value is not None else None


def delivery(view, webhook_id: str) -> Delivery:
    value = view.get(DELIVERIES_TABLE, webhook_id.encode())
    return Delivery(**json.loads(value)) if value is not None else Delivery()


def every(engine: Engine) -> list[Webhook]:
    """Every endpoint (secrets opened), in id order: what the dispatcher delivers to."""
    return [_decode(engine, value)
            for _, value in engine.scan(TABLE, b"", limits.webhooks_max)]


def page(engine: Engine, page_size: int, page_token: str
         ) -> tuple[list[tuple[Webhook, Delivery]], int, str]:
    """A page of endpoints in id order (secrets left empty) with their delivery state, the
    newest event id (for each one's backlog), and the next page's token."""
    page_size = page_size or limits.webhooks_per_page_default
    integer(page_size, "page_size", 1, limits.webhooks_per_page_max)
    text(page_token, "page_token", limits.name_bytes_max, required=False)
    head = events.head(engine)
    start = page_token.encode() + b"\0" if page_token else b""
    found = engine.scan(TABLE, start, page_size + 1)
    listed = [(dataclasses.replace(webhook, secret=b""), delivery(engine, webhook.webhook_id))
              for webhook in (_decode(engine, value) for _, value in found[:page_size])]
    return listed, head, (listed[-1][0].webhook_id if len(found) > page_size else "")


# -- writes (plan functions) ---------------------------------------------------------------------

def _partner_missing(transaction, webhook: Webhook) -> bool:
    return webhook.scope == PARTNER and auth.key_role(transaction, webhook.scope_id) != "partner"


def _put_delivery(transaction, webhook_id: str, record: Delivery) -> None:
    transaction.put(DELIVERIES_TABLE, webhook_id.encode(),
                    json.dumps(dataclasses.asdict(record), sort_keys=True).encode())


def _register(transaction, webhook: Webhook, head: int):
    """-> (status, stored endpoint or None). It starts after event `head`, read just before
    this commit: it may get a few events committed just before it, never miss one after."""
    existing = read(transaction, webhook.webhook_id)
    if existing is not None:
        same = existing.definition() == webhook.definition() \
            and constant_time_equal(existing.secret, webhook.secret)
        return (RegisterWebhookStatus.REGISTERED if same
                else RegisterWebhookStatus.ALREADY_EXISTS), existing
    if _partner_missing(transaction, webhook):
        return RegisterWebhookStatus.PARTNER_NOT_FOUND, None
    if len(transaction.scan(TABLE, b"", limits.webhooks_max)) >= limits.webhooks_max:
        return RegisterWebhookStatus.TOO_MANY, None
    now = transaction.now_ms
    webhook = dataclasses.replace(webhook, created_ms=now, updated_ms=now)
    sealed = transaction.seal_secret(_purpose(webhook.webhook_id), webhook.secret)
    transaction.put(TABLE, webhook.webhook_id.encode(), sealed_records.encode(webhook, sealed))
    _put_delivery(transaction, webhook.webhook_id, Delivery(cursor=head, created_ms=now))
    return RegisterWebhookStatus.REGISTERED, webhook


def _update(transaction, webhook: Webhook):
    value = transaction.get(TABLE, webhook.webhook_id.encode())
    if value is None:
        return UpdateWebhookStatus.NOT_FOUND, None
    if _partner_missing(transaction, webhook):
        return UpdateWebhookStatus.PARTNER_NOT_FOUND, None
    existing = _decode(transaction, value)
    if webhook.secret:  # rotated
        sealed = transaction.seal_secret(_purpose(webhook.webhook_id), webhook.secret)
    else:
        sealed = sealed_records.sealed_of(value)
    webhook = dataclasses.replace(webhook, secret=webhook.secret or existing.secret,
                                  created_ms=existing.created_ms, updated_ms=transaction.now_ms)
    transaction.put(TABLE, webhook.webhook_id.encode(), sealed_records.encode(webhook, sealed))
    return UpdateWebhookStatus.UPDATED, webhook


def _delete(transaction, webhook_id: str) -> DeleteWebhookStatus:
    key = webhook_id.encode()
    if transaction.get(TABLE, key) is None:
        return DeleteWebhookStatus.NOT_FOUND
    transaction.delete(TABLE, key)
    if transaction.get(DELIVERIES_TABLE, key) is not None:
        transaction.delete(DELIVERIES_TABLE, key)
    return DeleteWebhookStatus.DELETED


def _own_delivery(transaction, webhook: Webhook) -> Delivery | None:
    """The delivery record of exactly this endpoint (not of one deleted and registered again
    under its id since the dispatcher read it)."""
    stored = read(transaction, webhook.webhook_id)
    if stored is None or stored.created_ms != webhook.created_ms:
        return None
    record = delivery(transaction, webhook.webhook_id)
    return record if record.created_ms == webhook.created_ms else None


def acknowledged(transaction, webhook: Webhook, event_id: int) -> Delivery | None:
    """Event `event_id` got a 2xx: the cursor moves to it (never back) and the failures end."""
    record = _own_delivery(transaction, webhook)
    if record is None or event_id <= record.cursor:
        return record
    record = dataclasses.replace(record, cursor=event_id, last_event_id=event_id,
                                 last_success_ms=transaction.now_ms, consecutive_failures=0,
                                 last_error="", next_try_ms=0, failing_since_ms=0)
    _put_delivery(transaction, webhook.webhook_id, record)
    return record


def passed(transaction, webhook: Webhook, cursor: int) -> Delivery | None:
    """Every event up to `cursor` was acknowledged or is not for this endpoint."""
    record = _own_delivery(transaction, webhook)
    if record is None or cursor <= record.cursor:
        return record
    record = dataclasses.replace(record, cursor=cursor)
    _put_delivery(transaction, webhook.webhook_id, record)
    return record


def attempt_failed(transaction, webhook: Webhook, error: str, next_try_ms: int
                   ) -> Delivery | None:
    """An attempt failed with `error` (short, no secrets); the next is due at next_try_ms."""
    record = _own_delivery(transaction, webhook)
    if record is None:
        return None
    error = error.encode()[:limits.webhook_error_bytes_max].decode("utf-8", "ignore")
    record = dataclasses.replace(
        record, consecutive_failures=record.consecutive_failures + 1, last_error=error,
        next_try_ms=next_try_ms, failing_since_ms=record.failing_since_ms or transaction.now_ms)
    _put_delivery(transaction, webhook.webhook_id, record)
    return record


def prune(transaction, before_ms: int, limit: int = limits.events_pruned_per_commit_max) -> int:
    """Drop up to `limit` outbox records older than `before_ms` that no enabled endpoint still
    has to deliver (decided in this commit, so an endpoint enabled since keeps its events)
    -> how many."""
    keep_after_id = 2**64 - 1  # no enabled endpoint: only the retention time counts
    for key, value in transaction.scan(TABLE, b"", limits.webhooks_max):
        if json.loads(value)["enabled"]:
            keep_after_id = min(keep_after_id, delivery(transaction, key.decode()).cursor)
    return events.prune(transaction, before_ms, keep_after_id, limit)


def _without_secret(raw):
    status, webhook = raw
    return status, (dataclasses.replace(webhook, secret=b"") if webhook else None)


class Webhooks:
    """The writes of the Webhooks service. Answers carry the endpoint without its secret."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def register(self, webhook: Webhook, actor: str = "admin"):
        """-> (RegisterWebhookStatus, endpoint without secret or None)"""
        plan = self.engine.plan(_register, (validate(webhook), events.head(self.engine)),
                                actor, convert=_without_secret,
                                full=lambda: (RegisterWebhookStatus.STORAGE_FULL, None))
        return await self.engine.run_async(plan)

    async def update(self, webhook: Webhook, actor: str = "admin"):
        """-> (UpdateWebhookStatus, endpoint without secret or None)"""
        plan = self.engine.plan(_update, (validate(webhook, secret_required=False),), actor,
                                convert=_without_secret,
                                full=lambda: (UpdateWebhookStatus.STORAGE_FULL, None))
        return await self.engine.run_async(plan)

    async def delete(self, webhook_id: str, actor: str = "admin") -> DeleteWebhookStatus:
        text(webhook_id, "webhook_id", limits.name_bytes_max)
        return await self.engine.run_async(self.engine.plan(
            _delete, (webhook_id,), actor, full=lambda: DeleteWebhookStatus.STORAGE_FULL))


__all__ = ["ALL", "CHANNEL", "PARTNER", "SCOPES", "Delivery", "Webhook", "Webhooks", "delivery",
           "every", "page", "read", "validate"]
