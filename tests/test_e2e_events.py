"""WatchEvents end to end, against the shared `kamicore serve` (tests/conftest.py): each role
sees only its own events, a watcher that reconnects with its cursor sees every event exactly
once, and bad filters are refused naming the field. (Two workers and slow readers:
tests/test_e2e_events_workers.py.)"""

from __future__ import annotations

import grpc
import pytest
from kamicore.v1 import redemption_pb2

from .e2e_support import rpc_error, uid
from .events_support import key_of, take, type_name, until, watch
from .server_harness import buy, stocked_sku

ORDER_TYPES = ("order.created", "order.paid", "order.delivered")


def _delivered(order_id: str):
    return lambda event: type_name(event.type) == "order.delivered" and event.order_id == order_id


def test_a_storefront_hears_of_its_own_channels_orders_only(server, keys, c):
    sku = uid("ev-shop")
    stocked_sku(c.admin, sku, 6, channels=("web", "app", "partner"))
    web = watch(server.channel(fresh=True), keys["web"], skus=[sku], from_now=True)
    app_only = watch(server.channel(fresh=True), keys["admin"], skus=[sku], channel="app",
                     from_now=True)
    app_order = buy(c.app, sku).order.order_id
    web_orders = [buy(c.web, sku, 2).order.order_id for _ in range(2)]
    got = until(web, _delivered(web_orders[-1]))
    assert [(type_name(event.type), event.order_id) for event in got] == [
        (kind, order) for order in web_orders for kind in ORDER_TYPES]
    assert {(event.channel, event.owner, event.sku_id) for event in got} == {
        ("web", "storefront:web", sku)}
    assert [event.quantity for event in got if type_name(event.type) == "order.created"] == [2, 2]
    assert [event.id for event in got] == sorted({event.id for event in got})
    seen_by_admin = take(app_only, 3)
    assert [(type_name(event.type), event.order_id, event.channel) for event in seen_by_admin] \
        == [(kind, app_order, "app") for kind in ORDER_TYPES]
    web.cancel()
    app_only.cancel()


def test_a_terminal_hears_of_its_own_redemptions_only(server, keys, c):
    sku = uid("ev-till")
    stocked_sku(c.admin, sku, 3)
    sold = buy(c.web, sku, 3).order.codes
    mine = watch(server.channel(fresh=True), keys["pos"], from_now=True)

    def redeem(client, code) -> int:
        reply = client.redemption.Redeem(redemption_pb2.RedeemRequest(code=code.code,
                                                                      request_id=uid("ev-rq")))
        assert reply.code_id == code.code_id, reply
        return reply.code_id

    first = redeem(c.pos, sold[0])
    redeem(c.pos2, sold[1])  # another terminal's
    last = redeem(c.pos, sold[2])
    got = until(mine, lambda event: event.code_id == last)
    assert [(type_name(event.type), event.code_id, event.terminal, event.sku_id)
            for event in got] == [("code.redeemed", first, "T-01", sku),
                                  ("code.redeemed", last, "T-01", sku)]
    assert {event.channel for event in got} == {"web"}
    mine.cancel()


def test_a_watcher_that_reconnects_with_its_cursor_sees_every_event_once(server, keys, c):
    sku = uid("ev-resume")
    stocked_sku(c.admin, sku, 6)
    channel = server.channel(fresh=True)
    first = watch(channel, keys["partner"], skus=[sku], from_now=True)
    orders = [buy(c.partner, sku).order.order_id for _ in range(3)]
    read = take(first, 4)  # part of the second order's events
    channel.close()  # the connection drops mid-stream
    with pytest.raises(grpc.RpcError):
        next(first)
    orders += [buy(c.partner, sku).order.order_id for _ in range(3)]
    again = watch(server.channel(fresh=True), keys["partner"], skus=[sku],
                  after_id=read[-1].id)
    read += until(again, _delivered(orders[-1]))
    ids = [event.id for event in read]
    assert ids == sorted(set(ids)), "no event twice, and in id order"
    assert [key_of(event) for event in read] == [
        (kind, order, sku, 0) for order in orders for kind in ORDER_TYPES]
    again.cancel()


def test_from_the_start_a_watcher_gets_what_happened_before_it_came(server, keys, c):
    sku = uid("ev-backlog")
    stocked_sku(c.admin, sku, 2)
    order = buy(c.web, sku).order.order_id
    backlog = watch(server.channel(fresh=True), keys["admin"], skus=[sku])  # after_id 0
    got = until(backlog, _delivered(order))
    assert [type_name(event.type) for event in got] == list(ORDER_TYPES)
    backlog.cancel()


@pytest.mark.parametrize("client, fields, code, named", [
    ("admin", {"types": [99]}, grpc.StatusCode.INVALID_ARGUMENT, "types[0]"),
    ("admin", {"skus": [f"s{n}" for n in range(101)]}, grpc.StatusCode.INVALID_ARGUMENT,
     "skus"),
    ("admin", {"skus": ["ok", ""]}, grpc.StatusCode.INVALID_ARGUMENT, "skus[1]"),
    ("web", {"channel": "app"}, grpc.StatusCode.INVALID_ARGUMENT, "channel"),
    ("partner", {"channel": "partner"}, grpc.StatusCode.INVALID_ARGUMENT, "channel"),
    ("admin", {"after_id": 1, "from_now": True}, grpc.StatusCode.INVALID_ARGUMENT, "from_now"),
    ("admin", {"after_id": 2**63}, grpc.StatusCode.OUT_OF_RANGE, "after_id"),
], ids=["unknown-type", "too-many-skus", "empty-sku", "storefront-channel", "partner-channel",
        "cursor-and-from-now", "cursor-past-the-newest"])
def test_a_bad_watch_is_refused_naming_the_field(server, keys, client, fields, code, named):
    from kamicore.v1 import events_pb2, events_pb2_grpc

    from .server_harness import bearer
    stub = events_pb2_grpc.EventsStub(server.channel())
    error = rpc_error(lambda: next(stub.WatchEvents(events_pb2.WatchEventsRequest(**fields),
                                                    metadata=bearer(keys[client]), timeout=30)))
    assert error.code() == code, error
    assert error.details().startswith(f"{named}:"), error.details()
