"""Codes bought at payment time over a real server (2 workers, the dispatcher) and a real
simulated supplier: an order of a buy_on_payment SKU reserves nothing, ConfirmPayment buys its
codes and delivers them like pool codes - the very codes the supplier sold, once, however often
and on whichever worker ConfirmPayment is retried. (The failure paths, lost answers and
crashes: tests/test_code_purchases.py.)"""

from __future__ import annotations

import concurrent.futures
import hashlib

import pytest

from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, suppliers_pb2 as SP

from .e2e_support import uid
from .server_harness import ISSUED_CODES, order_request, pay_request, sku_message
from .supplier_harness import simulated_supplier

PAID = orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
PENDING = orders_pb2.CONFIRM_PAYMENT_STATUS_PENDING


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier(currency="CNY", unit_cost_micros=40_000_000) as running:
        yield running


def bought_sku(c, supplier) -> tuple[str, str]:
    """A buy_on_payment SKU routed to the simulator under a product of its own -> (sku id,
    product)."""
    sku_id, product = uid("bought"), uid("product")
    message = sku_message(sku_id)
    message.buy_on_payment = True
    created = c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=message))
    assert created.status == catalog_pb2.CREATE_SKU_STATUS_CREATED and created.sku.buy_on_payment
    reply = c.admin.suppliers.RegisterSupplier(SP.RegisterSupplierRequest(supplier=SP.Supplier(
        supplier_id=uid("S"), name="Simulated", protocol=SP.SUPPLIER_PROTOCOL_HTTP_JSON,
        address=supplier.http_address, timeout_ms=3000, signing_secret=supplier.secret,
        enabled=True, routes=[SP.SupplierRoute(
            sku_id=sku_id, product=product, enabled=True,
            cost=common_pb2.Money(currency="CNY", amount_micros=40_000_000))])))
    assert reply.status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED, reply
    return sku_id, product


def purchases_of(supplier, product: str) -> list[dict]:
    return [bought for bought in supplier.state()["purchases"].values()
            if bought["product"] == product]


def sha256s(order: orders_pb2.Order) -> list[str]:
    return sorted(hashlib.sha256(code.code.encode()).hexdigest() for code in order.codes)


def test_a_paid_order_is_delivered_the_codes_the_supplier_sold_once(server, c, supplier):
    sku_id, product = bought_sku(c, supplier)
    created = c.web.orders.CreateOrder(order_request(uid("bought"), sku_id, 3))
    assert created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED, created
    assert (created.order.state, len(created.order.codes)) == (
        orders_pb2.ORDER_STATE_RESERVED, 0)
    assert c.admin.stock(sku_id).sellable == 0  # no pool, nothing reserved
    paid = c.web.orders.ConfirmPayment(pay_request(created.order))
    assert paid.status == PAID, paid
    [bought] = purchases_of(supplier, product)
    assert (bought["quantity"], bought["received"]) == (3, 1)
    assert sha256s(paid.order) == sorted(bought["codes_sha256"])
    assert {code.state for code in paid.order.codes} == {common_pb2.CODE_STATE_SOLD}
    again = c.web_again.orders.ConfirmPayment(pay_request(created.order))  # a retry
    delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=created.order.order_id))
    assert again.status == PAID and sha256s(again.order) == sha256s(paid.order)
    assert sha256s(delivery.order) == sha256s(paid.order)
    [attempt] = delivery.order.attempts  # how they were bought
    assert delivery.order.topup_state == orders_pb2.TOP_UP_STATE_FULFILLED
    assert attempt.state == orders_pb2.TOP_UP_ATTEMPT_STATE_SUCCEEDED
    assert purchases_of(supplier, product) == [bought]
    cancel = orders_pb2.CancelOrderRequest(order_id=created.order.order_id)
    assert c.web.orders.CancelOrder(cancel).status == \
        orders_pb2.CANCEL_ORDER_STATUS_ALREADY_PAID  # shown in the PAID reply: not refundable
    stock = c.admin.stock(sku_id)
    [batch] = stock.batches
    assert (batch.batch_id, stock.sellable) == (bought["batch_id"], 0)
    codes = [code.code for code in paid.order.codes]
    ISSUED_CODES.update(codes)  # the suite's leak checks look for them too
    seen = server.logs() + server.metrics()
    assert not [code for code in codes if code in seen]


def test_confirm_payment_retried_at_once_on_both_workers_buys_once(server, keys, c, supplier):
    sku_id, product = bought_sku(c, supplier)
    supplier.configure(latency_ms=500)  # the purchase in flight while the retries land
    try:
        created = c.web.orders.CreateOrder(order_request(uid("bought"), sku_id, 2))
        shops = [server.client(keys["web"], fresh=True) for _ in range(6)]
        with concurrent.futures.ThreadPoolExecutor(len(shops)) as pool:
            answers = list(pool.map(
                lambda shop: shop.orders.ConfirmPayment(pay_request(created.order)), shops))
    finally:
        supplier.configure(latency_ms=0)
    assert {answer.status for answer in answers} <= {PAID, PENDING}
    delivered = {tuple(sha256s(answer.order)) for answer in answers if answer.status == PAID}
    [bought] = purchases_of(supplier, product)  # one purchase, however many ConfirmPayments
    assert bought["received"] == 1 and delivered == {tuple(sorted(bought["codes_sha256"]))}


def test_an_order_of_such_a_sku_has_one_line(c, supplier):
    sku_id, _ = bought_sku(c, supplier)
    other = uid("other")
    c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=sku_message(other)))
    request = order_request(uid("bought"), sku_id, lines=[
        orders_pb2.OrderLine(sku_id=sku_id, quantity=1),
        orders_pb2.OrderLine(sku_id=other, quantity=1)])
    with pytest.raises(Exception) as refused:
        c.web.orders.CreateOrder(request)
    assert "lines" in refused.value.details()
