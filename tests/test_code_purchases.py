"""Codes bought at payment time, in process over a real data file and a real simulated supplier
process: CreateOrder reserves nothing, ConfirmPayment buys the order's codes under an attempt
recorded before the call and delivers them like pool codes, exactly once - through retries of
ConfirmPayment, a lost answer, a crash between the record and the call, and failover after a
definite failure only."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kamicore import connectors
from kamicore.connectors import Endpoint
from kamicore.domain import code_purchases, topups
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.domain.order_requests import OrderRequest, validate_create
from kamicore.domain.orders import Orders, cancel, confirm_payment, create_order
from kamicore.domain.suppliers import Route, Supplier, Suppliers
from kamicore.engine import Engine, InvalidArgument
from kamicore.runtime.topups import Driver
from kamicore.statuses import (
    CancelOrderStatus, CodeState, ConfirmPaymentStatus as P, CreateOrderStatus, DeliveryKind,
    OrderState, RegisterSupplierStatus,
)

from .supplier_harness import simulated_supplier

PRICE = 9_000_000
SKU = Sku("card", "Card", "USD", 10_000_000, DeliveryKind.CODE, (ChannelPrice("web", PRICE),),
          buy_on_payment=True)


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier(currency="USD", unit_cost_micros=8_000_000) as running:
        yield running


class Shop:
    def __init__(self, path, clock, supplier):
        self.path, self.clock, self.supplier = path, clock, supplier
        self.engine = Engine(path, clock=clock)
        self.count = 0
        Catalog(self.engine).create(SKU)
        Catalog(self.engine).create(dataclasses.replace(SKU, sku_id="pool", buy_on_payment=False))
        self.orders = Orders(self.engine)

    def route(self, supplier_id: str, product: str = "card-10", priority: int = 0,
              timeout_ms: int = 2000) -> None:
        status, _, _ = Suppliers(self.engine).register(Supplier(
            supplier_id, supplier_id, "grpc", self.supplier.grpc_address, timeout_ms, True,
            self.supplier.secret, (Route("card", supplier_id, product, 8_000_000, "USD",
                                         priority),)))
        assert status == RegisterSupplierStatus.REGISTERED

    def order(self, quantity: int = 2, lines=None) -> tuple[CreateOrderStatus, str]:
        self.count += 1
        key = f"k{self.count}"
        request = validate_create(OrderRequest(key, f"buyer{self.count}", "", "",
                                               lines or [("card", quantity)], 0), 900)
        status = self.engine.run(self.engine.plan(
            create_order, (f"web/{key}".encode(), "storefront:web", "web", request,
                           self.orders.risk), "storefront:web", full=lambda: None))[0]
        return status, f"web/{key}"

    def driver(self) -> Driver:
        def connector(supplier):
            return connectors.connector_for(Endpoint(
                supplier.supplier_id, supplier.protocol, supplier.address, supplier.timeout_ms,
                supplier.secret))
        return Driver(self.engine, connector, follow_up_seconds=30)

    def pay(self, order_id: str, quantity: int = 2, reference: str = "pay-1") -> P:
        async def pay():
            driver = self.driver()
            try:
                return (await driver.confirm_payment(order_id, reference, "USD",
                                                     PRICE * quantity, "storefront:web"))[0]
            finally:
                await driver.close()
        return asyncio.run(pay())

    def recover(self) -> int:
        """The dispatcher's recovery task, once."""
        async def recover():
            driver = self.driver()
            try:
                return await driver.ask_due((topups.CALLING, topups.UNKNOWN))
            finally:
                await driver.close()
        return asyncio.run(recover())

    def delivered(self, order_id: str):
        return self.engine.order(order_id, reveal=True)


@pytest.fixture
def shop(tmp_path, clock, supplier):
    supplier.reset()
    supplier.configure(currency="USD", unit_cost_micros=8_000_000)
    opened = Shop(tmp_path / "data", clock, supplier)
    yield opened
    opened.engine.close()


def _purchases(supplier) -> dict:
    return supplier.state()["purchases"]


def test_a_paid_order_gets_bought_codes_once_and_a_retry_buys_nothing(shop, supplier):
    shop.route("S-1")
    status, order_id = shop.order(2)
    assert status == CreateOrderStatus.CREATED
    assert shop.engine.order(order_id) is None  # nothing reserved: there is no pool
    assert shop.pay(order_id) == P.PAID
    [(request_id, bought)] = _purchases(supplier).items()
    assert (bought["quantity"], bought["product"], bought["result"]) == (2, "card-10",
                                                                       "SUCCEEDED")
    view = shop.delivered(order_id)
    assert view.state == OrderState.PAID and len(view.plaintexts) == 2
    assert {code.batch for code in view.codes} == {bought["batch_id"]}
    assert {code.state for code in view.codes} == {CodeState.SOLD}
    [batch] = shop.engine.batch_stock("card")
    assert (batch.supplier, batch.counts) == ("S-1", {CodeState.SOLD: 2})
    assert shop.pay(order_id) == P.PAID  # a retry of ConfirmPayment
    assert shop.pay(order_id, reference="pay-2") == P.ALREADY_PAID
    assert list(_purchases(supplier)) == [request_id]
    assert shop.delivered(order_id).code_ids == view.code_ids
    [attempt] = code_purchases.attempts_of(shop.engine, shop.orders.meta(order_id))
    assert (attempt["state"], attempt["codes"], attempt["batch_id"]) == (
        "SUCCEEDED", 2, bought["batch_id"])
    assert "codes_sha256" not in attempt and not any(
        code in str(attempt) for code in view.plaintexts)


def test_bought_codes_reach_the_data_file_only_sealed(shop, supplier):
    shop.route("S-1")
    _, order_id = shop.order(3)
    assert shop.pay(order_id, 3) == P.PAID
    codes = shop.delivered(order_id).plaintexts
    shop.engine.close()
    stored = b"".join(path.read_bytes() for path in shop.path.rglob("*") if path.is_file())
    shop.engine = Engine(shop.path, clock=shop.clock)
    assert order_id.encode() in stored  # a positive control: the scan sees what is stored
    assert [code for code in codes if code.encode() in stored
            or code.encode().hex().encode() in stored] == []


def test_only_a_definite_failure_fails_over(shop, supplier):
    supplier.configure(products=["card-10"])  # S-1's product is refused: FAILED
    shop.route("S-1", product="other", priority=0)
    shop.route("S-2", priority=1)
    _, order_id = shop.order(1)
    assert shop.pay(order_id, 1) == P.PAID
    results = {bought["product"]: bought["result"] for bought in _purchases(supplier).values()}
    assert results == {"other": "FAILED", "card-10": "SUCCEEDED"}
    assert {code.batch for code in shop.delivered(order_id).codes} == {
        bought["batch_id"] for bought in _purchases(supplier).values() if bought["batch_id"]}


def test_when_every_supplier_fails_the_order_needs_a_refund(shop, supplier):
    supplier.configure(failure_rate=1.0)
    shop.route("S-1")
    _, order_id = shop.order(1)
    assert shop.pay(order_id, 1) == P.FAILED_REFUND_REQUIRED
    assert shop.pay(order_id, 1) == P.FAILED_REFUND_REQUIRED
    assert shop.engine.order(order_id) is None and len(_purchases(supplier)) == 1


def test_a_lost_answer_is_asked_again_under_the_same_request_id(shop, supplier, clock):
    supplier.configure(timeout_rate=1.0, hang_ms=3000)
    shop.route("S-1", timeout_ms=300)
    _, order_id = shop.order(2)
    assert shop.pay(order_id) == P.PENDING  # sold by the supplier, the answer lost
    assert shop.pay(order_id) == P.PENDING and shop.engine.order(order_id) is None
    supplier.configure(timeout_rate=0.0)
    clock.advance(60_000)
    assert shop.recover() == 1
    [(_, bought)] = _purchases(supplier).items()
    assert bought["received"] == 2  # asked again, not bought again
    assert shop.pay(order_id) == P.PAID and len(shop.delivered(order_id).plaintexts) == 2


def test_a_crash_between_the_record_and_the_call_buys_once(shop, supplier, clock):
    shop.route("S-1")
    _, order_id = shop.order(2)
    # ConfirmPayment's commit recorded the attempt; the process died before calling
    status, _, calls = shop.engine.run(shop.engine.plan(
        confirm_payment,
        (order_id.encode(), "pay-1", "USD", 2 * PRICE), "storefront:web", full=lambda: None))
    assert status == P.PENDING and len(calls) == 1
    shop.engine.close()
    shop.engine = Engine(shop.path, clock=clock)
    assert shop.recover() == 0  # not due yet: the caller may still be at it
    clock.advance(60_000)
    assert shop.recover() == 1 and shop.recover() == 0
    assert len(_purchases(supplier)) == 1
    assert shop.pay(order_id) == P.PAID and len(shop.delivered(order_id).plaintexts) == 2


def test_orders_of_such_skus_are_checked(shop):
    assert shop.order(1)[0] == CreateOrderStatus.DELIVERY_NOT_SUPPORTED  # no route yet
    shop.route("S-1")
    with pytest.raises(InvalidArgument) as refused:
        shop.order(lines=[("card", 1), ("pool", 1)])
    assert refused.value.field == "lines"


def test_a_cancelled_order_is_never_bought_for(shop, supplier):
    shop.route("S-1")
    _, order_id = shop.order(1)
    cancelled = shop.engine.run(shop.engine.plan(cancel, (order_id.encode(),), "storefront:web",
                                                 full=lambda: None))
    assert cancelled == CancelOrderStatus.CANCELLED
    assert shop.pay(order_id, 1) == P.REFUND_REQUIRED
    assert _purchases(supplier) == {} and shop.engine.order(order_id) is None
    _, paid_id = shop.order(1)
    assert shop.pay(paid_id, 1) == P.PAID
    # its codes were bought but never shown: voided and refunded (tests/test_refunds.py)
    assert shop.engine.run(shop.engine.plan(cancel, (paid_id.encode(),), "storefront:web",
                                            full=lambda: None)) == CancelOrderStatus.REFUNDED
