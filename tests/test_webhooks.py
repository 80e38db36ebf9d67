"""Webhook endpoints in process, on both engines (kamicore.domain.webhooks): registration is
idempotent and a different definition under the same id is refused; an update keeps or rotates
the secret; bad input is refused by field name and changes nothing; the scope and event types
pick the events an endpoint gets; the delivery cursor only moves forward; pruning keeps what an
enabled endpoint has not acknowledged; the secret is sealed at rest. (Delivery itself, over
HTTP to a real receiver: tests/test_e2e_webhooks.py.)"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kamicore import auth, limits
from kamicore.domain import events
from kamicore.domain import webhooks as W
from kamicore.engine import InvalidArgument
from kamicore.statuses import (
    DeleteWebhookStatus, RegisterWebhookStatus, UpdateWebhookStatus, WebhookDeliveryState,
)

SECRET = b"webhook-secret-0123456789"
HOOK = W.Webhook("shop-hook", "https://shop.example/hooks", W.CHANNEL, "web",
                 ("order.paid", "stock.low"), 60, True, SECRET)


def run(coroutine):
    return asyncio.run(coroutine)


def register(engine, webhook=HOOK):
    return run(W.Webhooks(engine).register(webhook))


def emit(engine, count: int, **fields) -> None:
    def plan(transaction):
        for _ in range(count):
            events.emit(transaction, fields.get("type", events.ORDER_PAID),
                        **{k: v for k, v in fields.items() if k != "type"})
    engine.run(engine.plan(plan, (), "test", full=lambda: None))


def commit(engine, function, *args):
    return engine.run(engine.plan(function, args, "test", full=lambda: None))


def test_a_retry_registers_once_and_another_definition_is_refused(engine):
    status, stored = register(engine)
    assert status == RegisterWebhookStatus.REGISTERED and stored.secret == b""
    assert register(engine)[0] == RegisterWebhookStatus.REGISTERED  # the retry
    for changed in (dataclasses.replace(HOOK, url="https://other.example/"),
                    dataclasses.replace(HOOK, secret=b"another-secret-0123456789"),
                    dataclasses.replace(HOOK, event_types=())):
        status, existing = register(engine, changed)
        assert status == RegisterWebhookStatus.ALREADY_EXISTS
        assert existing.url == HOOK.url and existing.secret == b""
    assert W.read(engine, "shop-hook").secret == SECRET
    assert W.read(engine, "shop-hook").event_types == HOOK.event_types


def test_an_update_keeps_the_secret_unless_given_and_keeps_the_cursor(engine):
    register(engine)
    emit(engine, 3)
    hook = W.read(engine, "shop-hook")
    commit(engine, W.acknowledged, hook, events.head(engine))
    updated = dataclasses.replace(HOOK, url="https://shop.example/v2", secret=b"")
    status, stored = run(W.Webhooks(engine).update(updated))
    assert status == UpdateWebhookStatus.UPDATED and stored.secret == b""
    assert W.read(engine, "shop-hook").secret == SECRET
    assert W.read(engine, "shop-hook").url == "https://shop.example/v2"
    rotated = dataclasses.replace(HOOK, secret=b"rotated-secret-0123456789")
    assert run(W.Webhooks(engine).update(rotated))[0] == UpdateWebhookStatus.UPDATED
    assert W.read(engine, "shop-hook").secret == b"rotated-secret-0123456789"
    assert W.delivery(engine, "shop-hook").cursor == events.head(engine) > 0
    missing = dataclasses.replace(HOOK, webhook_id="nobody")
    assert run(W.Webhooks(engine).update(missing)) == (UpdateWebhookStatus.NOT_FOUND, None)


def test_delete_removes_the_endpoint_and_its_delivery_state(engine):
    register(engine)
    assert run(W.Webhooks(engine).delete("shop-hook")) == DeleteWebhookStatus.DELETED
    assert W.read(engine, "shop-hook") is None
    assert W.delivery(engine, "shop-hook") == W.Delivery()
    assert run(W.Webhooks(engine).delete("shop-hook")) == DeleteWebhookStatus.NOT_FOUND


def test_a_partner_scope_must_name_a_partner_key(engine):
    _, info = auth.create_key(engine, "partner")
    shop_key, shop = auth.create_key(engine, "storefront", binding="web")
    partner = dataclasses.replace(HOOK, scope=W.PARTNER, scope_id=info.key_id)
    assert register(engine, partner)[0] == RegisterWebhookStatus.REGISTERED
    for scope_id in ("no-such-key", shop.key_id):
        other = dataclasses.replace(partner, webhook_id="other", scope_id=scope_id)
        assert register(engine, other) == (RegisterWebhookStatus.PARTNER_NOT_FOUND, None)
        assert run(W.Webhooks(engine).update(dataclasses.replace(other, webhook_id=HOOK.webhook_id))
                   ) == (UpdateWebhookStatus.PARTNER_NOT_FOUND, None)
    assert W.read(engine, "other") is None


def test_at_most_webhooks_max_endpoints(engine, monkeypatch):
    monkeypatch.setattr(limits, "webhooks_max", 2)
    for number in range(2):
        assert register(engine, dataclasses.replace(HOOK, webhook_id=f"h{number}"))[0] \
            == RegisterWebhookStatus.REGISTERED
    assert register(engine, dataclasses.replace(HOOK, webhook_id="h2")) \
        == (RegisterWebhookStatus.TOO_MANY, None)


@pytest.mark.parametrize(("change", "field"), [
    ({"webhook_id": ""}, "webhook.webhook_id"),
    ({"url": "ftp://shop.example/"}, "webhook.url"),
    ({"url": "https://"}, "webhook.url"),
    ({"url": "https://user:pass@shop.example/"}, "webhook.url"),
    ({"url": "https://shop.example/a b"}, "webhook.url"),
    ({"url": "https://shop.example:99999/"}, "webhook.url"),
    ({"url": "https://shop.example/" + "x" * limits.webhook_url_bytes_max}, "webhook.url"),
    ({"scope": ""}, "webhook.scope"),
    ({"scope_id": ""}, "webhook.scope_id"),
    ({"scope": W.ALL}, "webhook.scope_id"),
    ({"event_types": ("order.paid", "order.shipped")}, "webhook.event_types[1]"),
    ({"event_types": ("order.paid", "order.paid")}, "webhook.event_types[1]"),
    ({"retry_seconds": limits.webhook_retry_seconds_max + 1}, "webhook.retry_seconds"),
    ({"secret": b"short"}, "webhook.signing_secret"),
    ({"secret": b""}, "webhook.signing_secret"),
])
def test_bad_input_is_refused_by_field_and_changes_nothing(engine, change, field):
    with pytest.raises(InvalidArgument) as refused:
        register(engine, dataclasses.replace(HOOK, **change))
    assert refused.value.field == field
    assert W.every(engine) == []


def test_the_scope_and_event_types_pick_the_events():
    def event(type, **fields):
        return events.Event(1, type, 0, **fields)

    paid_web = event("order.paid", channel="web", owner="storefront:web")
    paid_app = event("order.paid", channel="app", owner="storefront:app")
    paid_partner = event("order.paid", channel="partner", owner="partner:k1")
    low = event("stock.low", sku="gift")
    created_web = event("order.created", channel="web", owner="storefront:web")
    failed = event("supplier.attempt_failed", supplier_id="acme")
    channel = HOOK
    assert [channel.wants(e) for e in (paid_web, paid_app, paid_partner, low, created_web)] \
        == [True, False, False, True, False]
    partner = dataclasses.replace(HOOK, scope=W.PARTNER, scope_id="k1", event_types=())
    assert [partner.wants(e) for e in (paid_web, paid_partner, low, failed)] \
        == [False, True, True, False]
    everything = dataclasses.replace(HOOK, scope=W.ALL, scope_id="", event_types=())
    assert all(everything.wants(e) for e in (paid_web, paid_app, low, failed))


def test_the_cursor_only_moves_forward_and_failures_end_with_a_success(engine, clock):
    register(engine)
    start = W.delivery(engine, "shop-hook").cursor
    emit(engine, 4)
    hook = W.read(engine, "shop-hook")
    assert W.delivery(engine, "shop-hook").state(hook, clock()) == WebhookDeliveryState.HEALTHY
    commit(engine, W.attempt_failed, hook, "http_500", clock() + 1000)
    failed = commit(engine, W.attempt_failed, hook, "timeout", clock() + 2000)
    assert (failed.consecutive_failures, failed.last_error, failed.failing_since_ms) \
        == (2, "timeout", clock())
    assert failed.state(hook, clock()) == WebhookDeliveryState.RETRYING
    assert failed.state(hook, clock() + 61_000) == WebhookDeliveryState.FAILING
    done = commit(engine, W.acknowledged, hook, start + 2)
    assert (done.cursor, done.last_event_id, done.consecutive_failures, done.last_error) \
        == (start + 2, start + 2, 0, "")
    assert commit(engine, W.acknowledged, hook, start + 1).cursor == start + 2  # never back
    assert commit(engine, W.passed, hook, start + 4).last_event_id == start + 2
    assert W.delivery(engine, "shop-hook").cursor == start + 4
    disabled = dataclasses.replace(hook, enabled=False)
    assert done.state(disabled, clock()) == WebhookDeliveryState.DISABLED


def test_a_stale_loop_never_writes_to_an_endpoint_registered_again(engine, clock):
    register(engine)
    old = W.read(engine, "shop-hook")
    run(W.Webhooks(engine).delete("shop-hook"))
    clock.advance(1)
    register(engine)
    emit(engine, 2)
    assert commit(engine, W.acknowledged, old, events.head(engine)) is None
    assert commit(engine, W.attempt_failed, old, "timeout", 0) is None
    assert W.delivery(engine, "shop-hook").consecutive_failures == 0
    assert W.delivery(engine, "shop-hook").cursor < events.head(engine)


def test_pruning_keeps_what_an_enabled_endpoint_still_needs(engine, clock):
    emit(engine, 3)  # before any endpoint
    register(engine)
    hook = W.read(engine, "shop-hook")
    emit(engine, 3)
    clock.advance(10_000)
    commit(engine, W.passed, hook, W.delivery(engine, "shop-hook").cursor + 1)
    cursor = W.delivery(engine, "shop-hook").cursor
    assert commit(engine, W.prune, clock() - 5_000) > 0
    assert events.first(engine) == cursor + 1  # the endpoint's events are all still there
    assert [e.id for e in events.read(engine, cursor)[0]] == list(range(cursor + 1, cursor + 3))
    run(W.Webhooks(engine).update(dataclasses.replace(HOOK, enabled=False, secret=b"")))
    assert commit(engine, W.prune, clock() - 5_000) > 0  # disabled: only the age counts
    assert events.read(engine, 0)[0] == []


def test_the_secret_is_never_in_the_data_file_in_plain(engine, tmp_path):
    register(engine)
    rotated = b"rotated-secret-abcdefghijk"
    run(W.Webhooks(engine).update(dataclasses.replace(HOOK, secret=rotated)))
    engine.close()
    data = b"".join(path.read_bytes() for path in (tmp_path / "data").iterdir()
                    if path.is_file() and path.name != "master.key")
    assert b"shop-hook" in data and b"shop.example" in data  # the records are there
    for secret in (SECRET, rotated):
        assert secret not in data and secret.hex().encode() not in data


def test_the_backoff_doubles_with_jitter_up_to_its_cap_and_a_failing_endpoint_waits_longest():
    from kamicore.runtime.webhooks import backoff_seconds
    cap = limits.webhook_backoff_seconds_max
    for failures, full in ((1, 1.0), (2, 2.0), (5, 16.0), (9, 256.0), (10, cap), (80, cap)):
        delays = [backoff_seconds(failures, 1.0, failing=False) for _ in range(200)]
        assert full / 2 <= min(delays) and max(delays) <= full
        assert max(delays) - min(delays) > full / 10  # jittered, not one value
    assert all(cap / 2 <= backoff_seconds(1, 1.0, failing=True) <= cap for _ in range(50))
