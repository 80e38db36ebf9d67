"""Webhooks over real sockets: a real `kamicore serve` POSTs its events to real HTTP receivers
(tests/webhook_receiver.py), which check every signature with their own HMAC.

Signed, in order per endpoint, at least once: a wrong secret is refused by the receiver and
nothing is acknowledged; a receiver that hangs or fails for a while delays neither another
endpoint nor any order, and gets everything once it answers again, in order, after retries
(counted, never timed); the scope and event types pick what each endpoint gets; the secret is
in no reply, log or data file; and kill -9 of the whole server while a POST is held open loses
no event and repeats only ids the receiver already saw.
"""

from __future__ import annotations

import pytest

from kamicore.domain import events
from kamicore.engine import Engine
from kamicore.v1 import webhooks_pb2 as W

from .e2e_support import metric_samples, metric_value, uid, wait_until
from .server_harness import Server, buy, cli, stocked_sku
from .webhook_receiver import CLOSE, FAIL, HANG, Receiver

SECRET = b"receiver-secret-0123456789"
# fast retries, and the dispatcher's ticks (which start loops for new endpoints) often
SETTINGS = {"webhook_backoff_seconds": "0.05", "dispatcher_interval_seconds": "0.1"}
TIMEOUT_SECONDS = 60.0  # generous for a slow machine: a wait, never an assertion on speed


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    """A server of this module's own (fast webhook retries), an admin and a storefront
    client, a partner key and client, and a stocked SKU."""
    data_dir = tmp_path_factory.mktemp("webhooks") / "data"
    server = Server(data_dir, settings=SETTINGS).start()
    try:
        admin = server.client(server.admin_key)
        shop_key, _ = server.create_key("storefront", "web")
        partner_key, partner_id = server.create_key("partner")
        sku = uid("hook-sku")
        stocked_sku(admin, sku, 60)
        yield {"server": server, "admin": admin, "shop": server.client(shop_key),
               "partner": server.client(partner_key), "partner_id": partner_id, "sku": sku}
    finally:
        server.stop()


@pytest.fixture
def receivers():
    started: list[Receiver] = []

    def start(secret: bytes = SECRET) -> Receiver:
        started.append(Receiver(secret).start())
        return started[-1]
    yield start
    for receiver in started:
        receiver.stop()


def register(admin, webhook_id: str, url: str, secret: bytes = SECRET, **fields) -> W.Webhook:
    reply = admin.webhooks.RegisterWebhook(W.RegisterWebhookRequest(webhook=W.Webhook(
        webhook_id=webhook_id, url=url, signing_secret=secret, enabled=True,
        scope=fields.pop("scope", W.WEBHOOK_SCOPE_ALL), **fields)))
    assert reply.status == W.REGISTER_WEBHOOK_STATUS_REGISTERED, reply
    return reply.webhook


def listed(admin) -> dict[str, W.WebhookStatus]:
    reply = admin.webhooks.ListWebhooks(W.ListWebhooksRequest(page_size=100))
    return {status.webhook.webhook_id: status for status in reply.webhooks}


def delete(admin, *webhook_ids: str) -> None:
    for webhook_id in webhook_ids:
        reply = admin.webhooks.DeleteWebhook(W.DeleteWebhookRequest(webhook_id=webhook_id))
        assert reply.status == W.DELETE_WEBHOOK_STATUS_DELETED


def delivered(receiver: Receiver, order_id: str) -> bool:
    return any(event["order_id"] == order_id and event["type"] == "order.delivered"
               for event in receiver.events())


def increasing(ids: list[int]) -> bool:
    return all(before < after for before, after in zip(ids, ids[1:], strict=False))


def test_events_come_signed_in_order_and_a_wrong_secret_is_refused(hooks, receivers):
    admin, shop = hooks["admin"], hooks["shop"]
    good, wrong = receivers(), receivers(b"not-the-secret-0123456789")
    register(admin, "signed", good.url)
    register(admin, "mis-signed", wrong.url)
    orders = [buy(shop, hooks["sku"]).order.order_id for _ in range(3)]
    good.wait_for(lambda: delivered(good, orders[-1]), "the last order's delivery")
    assert increasing(good.ids()) and good.bad_signatures == good.header_mismatches == 0
    for order_id in orders:
        assert [event["type"] for event in good.events() if event["order_id"] == order_id] \
            == ["order.created", "order.paid", "order.delivered"]
    wrong.wait_for(lambda: wrong.bad_signatures >= 2, "retries of a refused event")
    assert wrong.ids() == []
    state = wait_until(lambda: listed(admin)["mis-signed"].delivery, TIMEOUT_SECONDS,
                       "the failures committed")
    assert state.state == W.WEBHOOK_DELIVERY_STATE_RETRYING and state.last_error == "http_401"
    assert state.consecutive_failures >= 1 and state.last_event_id == 0
    assert state.backlog >= 9
    delete(admin, "signed", "mis-signed")
    # deleted: not one POST more, checked against an endpoint that gets the next event
    heard, sentinel = len(good.ids()), receivers()
    register(admin, "sentinel", sentinel.url)
    after = buy(shop, hooks["sku"]).order.order_id
    sentinel.wait_for(lambda: delivered(sentinel, after), "the order after the deletion")
    assert len(good.ids()) == heard
    delete(admin, "sentinel")


def test_a_down_endpoint_delays_no_other_nor_orders_and_gets_everything_after(hooks,
                                                                               receivers):
    admin, shop = hooks["admin"], hooks["shop"]
    down, steady = receivers(), receivers()
    register(admin, "down", down.url)
    register(admin, "steady", steady.url)
    down.fail(HANG)
    orders = [buy(shop, hooks["sku"]).order.order_id]
    assert down.holding.wait(TIMEOUT_SECONDS), "the first POST never came"
    orders += [buy(shop, hooks["sku"]).order.order_id for _ in range(3)]  # while it hangs
    steady.wait_for(lambda: delivered(steady, orders[-1]), "every order at the steady one")
    assert down.ids() == [] and down.holding.is_set()  # the other got it all meanwhile
    down.release(CLOSE, times=2)  # the held POST answers 503, two connections are closed
    down.wait_for(lambda: down.attempts >= 3, "the retries of the closed connections")
    down.fail(FAIL, times=2)  # then two 500s
    down.wait_for(lambda: delivered(down, orders[-1]), "everything after it came back")
    assert down.ids() == steady.ids() and increasing(down.ids())
    assert down.attempts >= len(down.ids()) + 5  # the hang, the closes, the 500s: each retried
    state = wait_until(lambda: (lambda d: d.backlog == 0 and d)(listed(admin)["down"].delivery),
                       TIMEOUT_SECONDS, "the cursor committed")
    assert state.state == W.WEBHOOK_DELIVERY_STATE_HEALTHY and state.consecutive_failures == 0
    assert state.last_event_id == down.ids()[-1] and state.last_success_ms > 0
    samples = metric_samples(hooks["server"].metrics())
    delivered_total = "kamicore_webhook_deliveries_total"
    assert metric_value(samples, delivered_total, webhook="down", outcome="acknowledged") \
        == len(down.ids())
    assert metric_value(samples, delivered_total, webhook="down", outcome="http_500") == 2
    assert metric_value(samples, delivered_total, webhook="down", outcome="disconnected") == 2
    assert metric_value(samples, "kamicore_webhook_backlog", webhook="down") == 0
    delete(admin, "down", "steady")


def test_an_endpoint_failing_past_its_window_holds_its_events_until_it_answers(hooks,
                                                                               receivers):
    admin, shop, server = hooks["admin"], hooks["shop"], hooks["server"]
    parked = receivers()
    hook = register(admin, "parked", parked.url, retry_seconds=1)
    parked.fail(FAIL)
    orders = [buy(shop, hooks["sku"]).order.order_id for _ in range(2)]
    wait_until(lambda: listed(admin)["parked"].delivery.state
               == W.WEBHOOK_DELIVERY_STATE_FAILING, TIMEOUT_SECONDS, "the endpoint FAILING")
    wait_until(lambda: "webhook parked is FAILING" in server.logs(), TIMEOUT_SECONDS, "the alert")
    samples = metric_samples(server.metrics())
    assert metric_value(samples, "kamicore_webhook_failing", webhook="parked") == 1
    assert parked.ids() == []
    # it answers again, with a rotated secret: an update ends the slow pace at once
    parked.secret = b"rotated-secret-0123456789"
    parked.release()
    hook.signing_secret = parked.secret
    assert admin.webhooks.UpdateWebhook(W.UpdateWebhookRequest(webhook=hook)).status \
        == W.UPDATE_WEBHOOK_STATUS_UPDATED
    parked.wait_for(lambda: delivered(parked, orders[-1]), "the held events")
    assert [e["order_id"] for e in parked.events()] == [orders[0]] * 3 + [orders[1]] * 3
    assert increasing(parked.ids()) and parked.bad_signatures == 0
    delete(admin, "parked")


def test_the_scope_and_event_types_pick_what_each_endpoint_gets(hooks, receivers):
    admin, shop, partner = hooks["admin"], hooks["shop"], hooks["partner"]
    web_paid, partner_all = receivers(), receivers()
    register(admin, "web-paid", web_paid.url, scope=W.WEBHOOK_SCOPE_CHANNEL, scope_id="web",
             event_types=["order.paid"])
    register(admin, "partner-all", partner_all.url, scope=W.WEBHOOK_SCOPE_PARTNER,
             scope_id=hooks["partner_id"])
    web = [buy(shop, hooks["sku"]).order.order_id]
    bought = [buy(partner, hooks["sku"]).order.order_id]
    web.append(buy(shop, hooks["sku"]).order.order_id)
    bought.append(buy(partner, hooks["sku"]).order.order_id)
    # in order per endpoint: once the last one's event is in, nothing earlier is still coming
    web_paid.wait_for(lambda: web[-1] in {e["order_id"] for e in web_paid.events()}, "web")
    assert [(e["type"], e["order_id"]) for e in web_paid.events()] \
        == [("order.paid", order_id) for order_id in web]
    partner_all.wait_for(lambda: delivered(partner_all, bought[-1]), "the partner's orders")
    assert {e["owner"] for e in partner_all.events()} == {f"partner:{hooks['partner_id']}"}
    assert [e["order_id"] for e in partner_all.events()] == [bought[0]] * 3 + [bought[1]] * 3
    delete(admin, "web-paid", "partner-all")


def test_the_secret_is_in_no_reply_log_or_data_file(hooks, receivers, tmp_path):
    server, admin = hooks["server"], hooks["admin"]
    secret = b"cli-secret-" + uid("s").encode() + b"-0123456789"
    receiver = receivers(secret)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(secret + b"\n")
    common = ("--target", server.target, "--key", server.admin_key)
    cli(server.data_dir, "webhook", "register", "by-cli", "--url", receiver.url,
        "--secret-file", str(secret_file), *common)
    order_id = buy(hooks["shop"], hooks["sku"]).order.order_id
    receiver.wait_for(lambda: delivered(receiver, order_id), "an event signed with it")
    listing = cli(server.data_dir, "webhook", "list", *common).stdout
    assert '"by-cli"' in listing
    reply = admin.webhooks.ListWebhooks(W.ListWebhooksRequest()).SerializeToString()
    data = b"".join(path.read_bytes() for path in server.data_dir.iterdir()
                    if path.is_file() and path.suffix == ".mdb")
    assert b"by-cli" in data  # the record is there
    for text, where in ((listing.encode(), "webhook list"), (reply, "ListWebhooks"),
                        (server.logs().encode(), "the server's logs"), (data, "the data file")):
        assert secret not in text and secret.hex().encode() not in text, where
    cli(server.data_dir, "webhook", "delete", "by-cli", *common)


def test_kill_9_during_delivery_loses_no_event_and_repeats_only_seen_ids(tmp_path, receivers):
    server = Server(tmp_path / "data", settings=SETTINGS)
    receiver = receivers()
    try:
        server.start()
        admin = server.client(server.admin_key)
        shop = server.client(server.create_key("storefront", "web")[0])
        stocked_sku(admin, "crash-sku", 20)
        register(admin, "crash", receiver.url)
        start = listed(admin)["crash"].delivery.cursor
        before = [buy(shop, "crash-sku").order.order_id for _ in range(3)]
        receiver.wait_for(lambda: len(receiver.ids()) >= 4, "deliveries under way")
        receiver.fail(HANG)
        before += [buy(shop, "crash-sku").order.order_id for _ in range(2)]
        assert receiver.holding.wait(TIMEOUT_SECONDS)
        server.kill()  # SIGKILL to every process of the server while a POST is held open
        receiver.release()
        server.start()
        admin = server.client(server.admin_key)
        shop = server.client(server.create_key("storefront", "web")[0])
        after = [buy(shop, "crash-sku").order.order_id for _ in range(2)]
        receiver.wait_for(lambda: delivered(receiver, after[-1]), "events after the restart")
        wait_until(lambda: listed(admin)["crash"].delivery.backlog == 0, TIMEOUT_SECONDS,
                   "the cursor at the head")
    finally:
        server.stop()
    with Engine(tmp_path / "data") as engine:
        expected, cursor = [], start
        while cursor < events.head(engine):
            page, cursor = events.read(engine, cursor)
            expected += [event.id for event in page]
    received = receiver.ids()
    seen: list[int] = []
    for event_id in received:  # each POST is the next new event, or one already seen
        assert event_id not in seen and (not seen or event_id > seen[-1]) or event_id in seen
        if event_id not in seen:
            seen.append(event_id)
    assert seen == expected and len(expected) == 3 * len(before + after)
    assert receiver.bad_signatures == 0
