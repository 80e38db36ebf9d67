"""Replenishment over a real server (supervisor, 2 workers, the dispatcher) and a real simulated
supplier process: 100 orders at once across both workers cross a SKU's low-stock threshold,
and exactly one purchase goes to the supplier; its codes arrive as the supplier's batch and
are sold like any others. (The steps one by one: tests/test_replenisher.py.)"""

from __future__ import annotations

import concurrent.futures
import time
import types

import pytest

from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, suppliers_pb2 as SP

from .e2e_support import uid
from .server_harness import Server, import_codes, new_codes, order_request, sku_message
from .supplier_harness import simulated_supplier

wait_seconds = 30.0  # for the dispatcher to buy and import (it ticks every second)


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier(currency="CNY", unit_cost_micros=3_000_000) as running:
        yield running


def register_supplier(c, supplier, supplier_id: str, sku_id: str, http: bool = False,
                      timeout_ms: int = 2000) -> None:
    """The simulator as `supplier_id`, routing `sku_id`, registered over the Suppliers API."""
    reply = c.admin.suppliers.RegisterSupplier(SP.RegisterSupplierRequest(supplier=SP.Supplier(
        supplier_id=supplier_id, name="Simulated",
        protocol=SP.SUPPLIER_PROTOCOL_HTTP_JSON if http else SP.SUPPLIER_PROTOCOL_GRPC,
        address=supplier.http_address if http else supplier.grpc_address,
        timeout_ms=timeout_ms, signing_secret=supplier.secret,
        enabled=True, routes=[SP.SupplierRoute(
            sku_id=sku_id, product="card-50", enabled=True,
            cost=common_pb2.Money(currency="CNY", amount_micros=3_000_000))])))
    assert reply.status == SP.REGISTER_SUPPLIER_STATUS_REGISTERED, reply


def replenished_sku(c, sku_id: str, stock: int, threshold: int, quantity: int) -> None:
    message = sku_message(sku_id, low_stock=threshold)
    message.replenish_quantity = quantity
    created = c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=message))
    assert created.status == catalog_pb2.CREATE_SKU_STATUS_CREATED, created
    assert created.sku.replenish_quantity == quantity
    reply = import_codes(c.admin, sku_id, new_codes(stock))
    assert reply.imported == stock, reply


def wait_for(condition, what: str):
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_100_concurrent_orders_across_both_workers_buy_exactly_once(server, keys, c, supplier):
    sku_id, supplier_id = uid("refill"), uid("S")
    replenished_sku(c, sku_id, stock=120, threshold=90, quantity=100)
    register_supplier(c, supplier, supplier_id, sku_id)
    shops = [server.client(keys["web"], fresh=True) for _ in range(4)]  # both workers

    def order(n: int) -> int:
        return shops[n % len(shops)].orders.CreateOrder(
            order_request(uid(f"refill-{n}"), sku_id, 1, account=f"buyer-{n}")).status

    calls = supplier.state()["calls"]["PurchaseCodes"]
    supplier.configure(latency_ms=1500)  # in flight a while (within the 2 s timeout)
    try:
        with concurrent.futures.ThreadPoolExecutor(25) as pool:
            statuses = list(pool.map(order, range(50)))  # 120 -> 70 sellable: below 90
            wait_for(lambda: supplier.state()["calls"]["PurchaseCodes"] > calls,
                     "the purchase")
            # the request is open and its purchase in flight: 50 more orders, all below
            statuses += pool.map(order, range(50, 100))
    finally:
        supplier.configure(latency_ms=0)
    assert statuses.count(orders_pb2.CREATE_ORDER_STATUS_CREATED) == 100
    stock = wait_for(lambda: (lambda s: s if s.sellable == 120 else None)(c.admin.stock(sku_id)),
                     "the bought codes")
    purchases = {request_id: bought for request_id, bought in
                 supplier.state()["purchases"].items() if sku_id in request_id}
    [(request_id, bought)] = purchases.items()  # one purchase, however many orders crossed
    assert (bought["received"], bought["quantity"], bought["product"]) == (1, 100, "card-50")
    [batch] = [batch for batch in stock.batches if batch.supplier_id == supplier_id]
    assert batch.batch_id == bought["batch_id"]
    assert not stock.low_stock
    time.sleep(3)  # more ticks and periodic checks: still that one purchase
    assert [r for r in supplier.state()["purchases"] if sku_id in r] == [request_id]
    metrics = server.metrics()
    assert f'kamicore_replenishment_requests_open{{sku="{sku_id}"}}' not in metrics
    assert "kamicore_replenishment_requests_open_total" in metrics


def test_a_failed_purchase_is_retried_and_counted(server, c, supplier):
    sku_id, supplier_id = uid("refail"), uid("S")
    supplier.configure(products=["other-product"])  # refuses this route's product: FAILED
    try:
        replenished_sku(c, sku_id, stock=3, threshold=5, quantity=10)  # below at once
        register_supplier(c, supplier, supplier_id, sku_id)
        line = (f'kamicore_replenishment_failures_total{{sku="{sku_id}",'
                f'supplier="{supplier_id}"}}')
        wait_for(lambda: line in server.metrics(), "the failure metric")
        assert f'kamicore_replenishment_requests_open{{sku="{sku_id}"}} 1.0' in \
            server.metrics()
        supplier.configure(products=[])
        wait_for(lambda: c.admin.stock(sku_id).sellable == 13, "the retry's codes")
    finally:
        supplier.configure(products=[])
    results = [bought["result"] for request_id, bought in supplier.state()["purchases"].items()
               if sku_id in request_id]
    assert results[-1] == "SUCCEEDED" and set(results[:-1]) == {"FAILED"}


def test_kill_9_while_the_purchase_waits_for_its_answer_buys_once(tmp_path, supplier):
    """The supplier sells at once but holds its answer; the whole server is killed meanwhile.
    After a restart the dispatcher sends the same request id again: the supplier answers it
    with the codes it sold, and sells nothing more."""
    server = Server(tmp_path / "data", tmp_path, "refill-killed").start()
    try:
        c = types.SimpleNamespace(admin=server.client(server.admin_key))
        sku_id, supplier_id = uid("refill-kill"), uid("S")
        replenished_sku(c, sku_id, stock=3, threshold=5, quantity=10)  # below at once
        supplier.configure(timeout_rate=1.0, hang_ms=3000)
        register_supplier(c, supplier, supplier_id, sku_id, http=True, timeout_ms=10_000)
        [request_id] = wait_for(lambda: [r for r in supplier.state()["purchases"]
                                         if sku_id in r], "the purchase")
        server.kill()  # SIGKILL: supervisor, workers and dispatcher
        supplier.configure(timeout_rate=0.0)
        server.start()
        admin = server.client(server.admin_key)
        wait_for(lambda: admin.stock(sku_id).sellable == 13, "the bought codes")
        purchases = {r: bought for r, bought in supplier.state()["purchases"].items()
                     if sku_id in r}
        assert list(purchases) == [request_id] and purchases[request_id]["received"] == 2
    finally:
        supplier.configure(timeout_rate=0.0)
        assert server.stop() == 0, server.logs()[-3000:]
