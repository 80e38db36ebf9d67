"""Replenishment requests in process over a real data file: the order whose reservation
crosses a SKU's low-stock threshold opens one request in its own commit, and no other order,
commit or periodic check opens a second while it is open; attempts keep their request id until
a definite failure, with a doubling backoff. (The calls to suppliers and the import:
tests/test_replenisher.py; across a real 2-worker server: tests/test_e2e_replenishment.py.)"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kamicore import limits
from kamicore.domain import replenishment, routing
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku, validate
from kamicore.domain.suppliers import Route, Supplier, Suppliers
from kamicore.domain.order_requests import OrderRequest, validate_create
from kamicore.domain.orders import Orders, create_order
from kamicore.engine import InvalidArgument
from kamicore.statuses import (
    CreateOrderStatus, DeliveryKind, RegisterSupplierStatus, SkuLookupStatus,
)

from .support import DAY_MS

SKU = Sku("gift", "Gift", "USD", 10_000_000, DeliveryKind.CODE,
          (ChannelPrice("web", 9_000_000),), low_stock_threshold=5, replenish_quantity=20)


def _shop(engine, sku=SKU, stock=8, **validity):
    Catalog(engine).create(sku)
    if stock:
        assert engine.import_codes(sku.sku_id, "first", [f"GIFT-{n:05d}" for n in range(stock)],
                                   **validity).imported == stock
    return Orders(engine)


def _plan(engine, orders, key: str, quantity: int = 1, sku_id: str = "gift"):
    request = validate_create(OrderRequest(key, f"buyer-{key}", "", "", [(sku_id, quantity)],
                                           0), 900)
    return engine.plan(create_order, (f"web/{key}".encode(), "storefront:web", "web", request,
                                      orders.risk), "storefront:web", full=lambda: None)


def _order(engine, orders, key: str, quantity: int = 1) -> CreateOrderStatus:
    return engine.run(_plan(engine, orders, key, quantity))[0]


def test_the_order_that_crosses_the_threshold_opens_one_request(engine):
    orders = _shop(engine)
    for key in "abc":  # 8 -> 5 sellable: not below 5 yet
        assert _order(engine, orders, key) == CreateOrderStatus.CREATED
    assert replenishment.read(engine, "gift") is None
    assert _order(engine, orders, "d") == CreateOrderStatus.CREATED  # 4 < 5
    opened = replenishment.read(engine, "gift")
    assert (opened["state"], opened["number"], opened["quantity"],
            opened["sellable_at_open"]) == ("open", 1, 20, 4)
    for key in "efg":  # still below, one request stays open
        assert _order(engine, orders, key) == CreateOrderStatus.CREATED
    assert replenishment.read(engine, "gift") == opened
    assert [record["sku_id"] for record in replenishment.open_requests(engine)] == ["gift"]


def test_orders_in_one_group_commit_open_one_request(engine):
    orders = _shop(engine, stock=40)
    futures = [engine.submit(_plan(engine, orders, f"k{n}")) for n in range(45)]
    statuses = [future.result()[0] for future in futures]
    assert statuses.count(CreateOrderStatus.CREATED) == 40
    assert statuses.count(CreateOrderStatus.INSUFFICIENT_STOCK) == 5
    record = replenishment.read(engine, "gift")
    assert (record["number"], record["state"]) == (1, "open")


def test_a_sku_without_replenishment_never_opens_one(engine):
    orders = _shop(engine, dataclasses.replace(SKU, replenish_quantity=0), stock=2)
    assert _order(engine, orders, "a", 2) == CreateOrderStatus.CREATED
    assert replenishment.read(engine, "gift") is None


def _periodic_check(engine) -> list[str]:
    """The periodic check as the replenisher runs it, pages of 2 -> the SKUs it opened for."""
    opened, start = [], ""
    while True:
        due, start = replenishment.candidates(engine, start, 2)
        for sku_id in due:
            if engine.run(engine.plan(replenishment.check_sku, (sku_id,), "replenisher",
                                      full=lambda: None)) is not None:
                opened.append(sku_id)
        if not start:
            return opened


def test_the_periodic_check_sees_stock_that_expired_without_an_order(engine, clock):
    _shop(engine, stock=8, valid_until_ms=clock.now_ms + DAY_MS)
    commits = engine.commits
    assert _periodic_check(engine) == [] and engine.commits == commits  # nothing written
    clock.advance(DAY_MS)  # every code expired: nothing sellable
    assert _periodic_check(engine) == ["gift"]
    assert replenishment.read(engine, "gift")["sellable_at_open"] == 0
    assert _periodic_check(engine) == []  # open already


def test_an_order_counts_boundedly_and_the_periodic_check_fully(engine, clock, monkeypatch):
    monkeypatch.setattr(limits, "sellable_keys_counted_max", 5)
    orders = _shop(engine, stock=0)
    engine.import_codes("gift", "old", [f"OLD-{n:04d}" for n in range(6)],
                        valid_until_ms=clock.now_ms + 1000)
    engine.import_codes("gift", "new", [f"NEW-{n:04d}" for n in range(6)])
    clock.advance(1000)  # 6 expired: more than an order's commit counts
    assert _order(engine, orders, "a", 2) == CreateOrderStatus.CREATED  # 4 sellable, < 5
    assert replenishment.read(engine, "gift") is None  # not counted in the order's commit
    assert _periodic_check(engine) == ["gift"]
    assert replenishment.read(engine, "gift")["sellable_at_open"] == 4


def test_the_periodic_check_pages_through_the_catalog(engine):
    catalog = Catalog(engine)
    for n in range(5):
        catalog.create(dataclasses.replace(SKU, sku_id=f"sku-{n}"))
    catalog.create(dataclasses.replace(SKU, sku_id="sku-off", replenish_quantity=0))
    assert _periodic_check(engine) == [f"sku-{n}" for n in range(5)]
    assert [r["sku_id"] for r in replenishment.open_requests(engine)] == [
        f"sku-{n}" for n in range(5)]


def _run(engine, function, *args):
    return engine.run(engine.plan(function, args, "replenisher", full=lambda: None))


def _supplier(engine, supplier_id: str, priority: int, sku_id: str = "gift"):
    status, _, _ = Suppliers(engine).register(Supplier(
        supplier_id, supplier_id, "grpc", "127.0.0.1:9", 1000, True, b"s" * 32,
        (Route(sku_id, supplier_id, f"P-{supplier_id}", 4_000_000, "USD", priority),)))
    assert status == RegisterSupplierStatus.REGISTERED


def test_an_attempt_keeps_its_request_id_until_a_definite_failure(engine, clock):
    orders = _shop(engine, stock=5)
    _supplier(engine, "S-2", 2)
    _supplier(engine, "S-1", 1)
    _order(engine, orders, "a")
    first = _run(engine, replenishment.begin_attempt, "gift", 1)
    assert (first["request_id"], first["supplier_id"], first["product"]) == (
        "replenish/gift/1/1", "S-1", "P-S-1")  # the preferred route
    # recorded before the call: a restart (or an unknown outcome) resends the same id there
    assert _run(engine, replenishment.begin_attempt, "gift", 1) == first
    unknown = _run(engine, replenishment.record_unknown, "gift", "replenish/gift/1/1",
                   "UNKNOWN", 50)
    assert unknown["request_id"] == "replenish/gift/1/1"
    assert unknown["next_try_ms"] == clock.now_ms + 1000
    failed = _run(engine, replenishment.record_failure, "gift", "replenish/gift/1/1", "FAILED")
    assert failed["request_id"] == "" and failed["next_try_ms"] == clock.now_ms + 2000
    second = _run(engine, replenishment.begin_attempt, "gift", 1)
    assert (second["request_id"], second["supplier_id"]) == ("replenish/gift/1/2", "S-1")
    # an answer to an old attempt changes nothing
    def answer(batch: str, count: int) -> dict:
        return {"codes": [f"{batch}-{n:04d}" for n in range(count)], "batch_id": batch,
                "unit_cost_micros": 4_000_000, "currency": "USD",
                "valid_until_ms": limits.time_ms_max}
    # an answer to an old attempt changes nothing
    assert _run(engine, replenishment.deliver, "gift", "replenish/gift/1/1",
                answer("OLD", 20)) is None
    closed = _run(engine, replenishment.deliver, "gift", "replenish/gift/1/2",
                  answer("B-7", 20))
    assert (closed["state"], closed["batch_id"], closed["imported"]) == ("closed", "B-7", 20)
    assert engine.stock("gift").sellable == 24  # imported in the commit that closed it
    assert _run(engine, replenishment.deliver, "gift", "replenish/gift/1/2",
                answer("B-7", 20)) is None  # a second answer imports nothing
    assert replenishment.open_requests(engine) == []
    stats = routing.stats(engine, "S-1", "gift")
    assert (stats["successes"], stats["failures"], stats["unknown"]) == (1, 1, 1)
    _order(engine, orders, "b", 19)  # 24 -> 5: not below yet
    assert replenishment.read(engine, "gift")["state"] == "closed"
    _order(engine, orders, "c")  # below again: the next request opens
    assert replenishment.read(engine, "gift")["number"] == 2


def test_without_a_route_the_request_waits_for_the_backoff(engine, clock):
    orders = _shop(engine, stock=5)
    _order(engine, orders, "a")
    record = _run(engine, replenishment.begin_attempt, "gift", 1)
    assert (record["request_id"], record["last_result"], record["next_try_ms"]) == (
        "", "NO_ROUTE", clock.now_ms + 1000)
    _supplier(engine, "S-1", 1)
    assert _run(engine, replenishment.begin_attempt, "gift", 1)["supplier_id"] == "S-1"


def test_a_request_of_a_sku_turned_off_closes_before_any_call(engine):
    orders = _shop(engine, stock=5)
    _supplier(engine, "S-1", 1)
    _order(engine, orders, "a")
    status, _ = asyncio.run(Catalog(engine).update_async(dataclasses.replace(
        SKU, replenish_quantity=0)))
    assert status == SkuLookupStatus.FOUND
    assert _run(engine, replenishment.begin_attempt, "gift", 1) is None
    assert replenishment.read(engine, "gift")["last_result"] == "CANCELLED"
    assert replenishment.open_requests(engine) == []


def test_the_backoff_doubles_up_to_its_cap():
    delays = [replenishment.backoff_ms(failures) for failures in range(1, 40)]
    assert delays[:4] == [1000, 2000, 4000, 8000]
    assert max(delays) == delays[-1] == limits.replenishment_retry_seconds_max * 1000


@pytest.mark.parametrize("change, field", [
    ({"replenish_quantity": limits.codes_per_replenishment_max + 1}, "sku.replenish_quantity"),
    ({"replenish_quantity": -1}, "sku.replenish_quantity"),
    ({"low_stock_threshold": 0}, "sku.replenish_quantity"),
    ({"buy_on_payment": True}, "sku.buy_on_payment"),
    ({"buy_on_payment": True, "replenish_quantity": 0,
      "delivery_kind": DeliveryKind.DIRECT_TOPUP}, "sku.buy_on_payment"),
])
def test_bad_supply_settings_are_refused_naming_the_field(change, field):
    with pytest.raises(InvalidArgument) as refused:
        validate(dataclasses.replace(SKU, **change))
    assert refused.value.field == field
