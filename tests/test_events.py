"""The outbox, in process over a real data file, on both engines: every business event is
written in the commit of its change - the compiled redeem path's included - named with its
order, channel, owner, terminal and SKU, never with a code's plaintext; a reader resuming after
the last id it saw gets every later event once."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kamicore.domain import events
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.domain.order_requests import OrderRequest, validate_create
from kamicore.domain.orders import Orders, cancel, confirm_payment, create_order
from kamicore.statuses import (
    CancelOrderStatus, ConfirmPaymentStatus, CreateOrderStatus, DeliveryKind, RedeemStatus,
    ReportInvalidStatus,
)

CODES = [f"GIFT-CODE-{n:04d}" for n in range(6)]
SKU = Sku("gift", "Gift", "USD", 10_000_000, DeliveryKind.CODE,
          (ChannelPrice("web", 9_000_000),), low_stock_threshold=3)


def _shop(engine, codes=CODES):
    Catalog(engine).create(SKU)
    Catalog(engine).create(dataclasses.replace(SKU, sku_id="film", low_stock_threshold=0))
    assert engine.import_codes("gift", "b1", codes).imported == len(codes)
    assert engine.import_codes("film", "f1", ["FILM-0001", "FILM-0002"]).imported == 2
    return Orders(engine)


def _run(engine, function, *args):
    return engine.run(engine.plan(function, args, "test", full=lambda: None))


def _order(engine, orders, key, lines=(("gift", 1),), channel="web"):
    request = validate_create(OrderRequest(key, f"buyer-{key}", "", "", list(lines), 0), 900)
    order_id = f"storefront:{channel}/{key}"
    status, meta, _ = _run(engine, create_order, order_id.encode(), f"storefront:{channel}",
                           channel, request, orders.risk)
    return status, order_id, meta


def _pay(engine, order_id, meta):
    return _run(engine, confirm_payment, order_id.encode(), f"pay-{order_id}", meta["currency"],
                meta["total_micros"])[0]


def _all(engine, after_id=0):
    found = []
    while True:
        page, cursor = events.read(engine, after_id, 4)  # small pages: the cursor is exercised
        found += page
        if cursor == after_id:
            return found
        after_id = cursor


def _kinds(found):
    return [(event.type, event.order_id, event.sku, event.quantity) for event in found]


def test_an_order_s_life_is_told_once_each_step_in_its_own_commit(engine):
    orders = _shop(engine)
    status, order_id, meta = _order(engine, orders, "a", (("gift", 2), ("film", 1)))
    assert status == CreateOrderStatus.CREATED
    assert _kinds(_all(engine)) == [("order.created", order_id, "gift", 2),
                                    ("order.created", order_id, "film", 1)]
    seen = events.head(engine)
    assert _pay(engine, order_id, meta) == ConfirmPaymentStatus.PAID
    assert _pay(engine, order_id, meta) == ConfirmPaymentStatus.PAID  # a retry tells nothing
    later = _all(engine, seen)
    assert _kinds(later) == [("order.paid", order_id, "gift", 2),
                             ("order.paid", order_id, "film", 1),
                             ("order.delivered", order_id, "gift", 2),
                             ("order.delivered", order_id, "film", 1)]
    assert {(event.channel, event.owner) for event in later} == {("web", "storefront:web")}
    assert [event.id for event in _all(engine)] == sorted({event.id for event in _all(engine)})


def test_a_redemption_names_its_terminal_and_the_sale_never_the_code(engine):
    orders = _shop(engine)
    _, order_id, meta = _order(engine, orders, "a")
    _pay(engine, order_id, meta)
    [code_id] = engine.order(order_id).code_ids
    code = engine.order(order_id, reveal=True).plaintexts[0]
    seen = events.head(engine)
    [result] = engine.redeem([(code, "r1")], "till-7")
    assert result.status == RedeemStatus.REDEEMED
    engine.redeem([(code, "r1")], "till-7")  # a retry: answered again, no second event
    [redeemed] = _all(engine, seen)
    assert (redeemed.type, redeemed.code_id, redeemed.terminal, redeemed.order_id,
            redeemed.channel, redeemed.owner, redeemed.sku) == (
        "code.redeemed", code_id, "till-7", order_id, "web", "storefront:web", "gift")
    every = b"".join(event.to_json() for event in _all(engine))
    assert not any(plain.encode() in every for plain in CODES)


def test_a_leaked_code_is_told_frozen_with_the_terminal_that_presented_it(engine):
    _shop(engine)
    seen = events.head(engine)
    [result] = engine.redeem([(CODES[5], "r1")], "till-9")
    assert result.status == RedeemStatus.NOT_SOLD
    [frozen] = _all(engine, seen)
    assert (frozen.type, frozen.terminal, frozen.order_id, frozen.channel) == (
        "code.frozen", "till-9", "", "")


def test_a_reported_code_and_its_replacement_are_two_events(engine):
    orders = _shop(engine)
    _, order_id, meta = _order(engine, orders, "a")
    _pay(engine, order_id, meta)
    [code_id] = engine.order(order_id).code_ids
    seen = events.head(engine)
    [reported] = engine.report_invalid([(order_id, code_id)])
    assert reported.status == ReportInvalidStatus.REISSUED
    assert [(event.type, event.code_id, event.order_id) for event in _all(engine, seen)] == [
        ("code.reported_invalid", code_id, order_id),
        ("code.reissued", reported.replacement_code_id, order_id)]


def test_cancel_and_expiry_release_units_once_each(engine, clock):
    orders = _shop(engine)
    _, cancelled, _ = _order(engine, orders, "a")
    _, lapsed, _ = _order(engine, orders, "b")
    seen = events.head(engine)
    assert _run(engine, cancel, cancelled.encode()) == CancelOrderStatus.CANCELLED
    assert _run(engine, cancel, cancelled.encode()) == CancelOrderStatus.CANCELLED
    clock.advance(901_000)
    assert orders.sweep() == 1
    assert [(event.type, event.order_id, event.detail) for event in _all(engine, seen)] == [
        ("order.released", cancelled, "cancelled"), ("order.expired", lapsed, "")]


def test_low_stock_is_told_once_per_crossing(engine):
    orders = _shop(engine)  # 6 gift codes, threshold 3
    for key in "abcd":  # 5, 4, 3 sellable: not low; 2: low
        _order(engine, orders, key)
    low = [event for event in _all(engine) if event.type == "stock.low"]
    assert [(event.sku, event.quantity) for event in low] == [("gift", 2)]
    _order(engine, orders, "e")  # still low: no second event
    assert engine.import_codes("gift", "b2", ["GIFT-MORE-1", "GIFT-MORE-2", "GIFT-MORE-3"]
                               ).imported == 3
    _order(engine, orders, "f")  # 4 - 1 = 3: back at the threshold, re-armed
    _order(engine, orders, "g")  # 2: low again
    low = [event for event in _all(engine) if event.type == "stock.low"]
    assert [event.quantity for event in low] == [2, 2]


def test_orders_in_one_group_commit_get_distinct_rising_ids(engine):
    orders = _shop(engine, [f"GIFT-BULK-{n:04d}" for n in range(40)])
    plans = []
    for n in range(30):
        request = validate_create(OrderRequest(f"k{n}", "buyer", "", "", [("gift", 1)], 0), 900)
        plans.append(engine.plan(create_order, (f"storefront:web/k{n}".encode(),
                                                "storefront:web", "web", request, orders.risk),
                                 "test", full=lambda: None))
    assert all(future.result()[0] == CreateOrderStatus.CREATED
               for future in [engine.submit(plan) for plan in plans])
    created = [event for event in _all(engine) if event.type == "order.created"]
    assert len(created) == 30 and len({event.order_id for event in created}) == 30
    ids = [event.id for event in _all(engine)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_a_reader_resuming_from_any_cursor_sees_the_rest_once(engine):
    orders = _shop(engine)
    for key in "abc":
        _, order_id, meta = _order(engine, orders, key)
        _pay(engine, order_id, meta)
    engine.redeem([(CODES[5], "leak")], "till-1")  # a leak: its block also reserves others
    every = _all(engine)
    assert every and events.head(engine) >= every[-1].id
    for cut in range(len(every)):
        assert _all(engine, every[cut].id) == every[cut + 1:]


def test_pruning_keeps_what_a_reader_still_needs(engine, clock):
    orders = _shop(engine)
    _order(engine, orders, "a")
    clock.advance(10_000)
    _order(engine, orders, "b")
    every = _all(engine)
    assert events.first(engine) == every[0].id
    cutoff = clock.now_ms  # "a" is older, "b" is not
    assert _run(engine, events.prune, cutoff, every[0].id - 1) == 0  # not acknowledged yet
    assert _run(engine, events.prune, cutoff, events.head(engine)) == 1
    assert _all(engine) == every[1:]
    assert events.first(engine) == every[1].id


@pytest.mark.parametrize("role, binding, owner, sees", [
    ("admin", "", "admin:k", {"order.created", "stock.low", "code.redeemed", "code.frozen"}),
    ("storefront", "web", "storefront:web", {"order.created", "stock.low", "code.redeemed"}),
    ("storefront", "app", "storefront:app", {"stock.low"}),
    ("partner", "", "partner:p1", {"stock.low"}),
    ("pos", "till-1", "pos:k", {"code.redeemed", "code.frozen"}),
    ("pos", "till-2", "pos:k", set()),
    ("supplier", "acme", "supplier:k", set()),
])
def test_each_role_sees_only_its_own(role, binding, owner, sees):
    made = [events.Event(1, "order.created", 0, channel="web", owner="storefront:web"),
            events.Event(2, "stock.low", 0, sku="gift"),
            events.Event(3, "code.redeemed", 0, channel="web", owner="storefront:web",
                         terminal="till-1"),
            events.Event(4, "code.frozen", 0, terminal="till-1")]
    assert {event.type for event in made if events.visible(event, role, binding, owner)} == sees


def test_an_event_serialises_every_field():
    event = events.Event(7, "code.redeemed", 1, sku="gift", code_id=3, terminal="t")
    assert json.loads(event.to_json()) == dataclasses.asdict(event)
