"""The replenisher task against a real simulated supplier process (tests/supplier_harness.py),
over a real data file: the codes it buys come in through the normal import with the
supplier's batch, cost and id and can be sold; a failed purchase retries with a backoff under
new request ids and raises the failure metric; an answer lost (a timeout, then a crash of
kamicore) is taken up again with the same request id, so the supplier sells once. (Across a
real 2-worker server and its dispatcher: tests/test_e2e_replenishment.py.)"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from kamicore import connectors
from kamicore.config import Config
from kamicore.domain import replenishment
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.domain.order_requests import OrderRequest, validate_create
from kamicore.domain.orders import Orders, create_order
from kamicore.domain.suppliers import Route, Supplier, Suppliers
from kamicore.engine import Engine
from kamicore.runtime import replenisher
from kamicore.runtime.dispatcher import Dispatcher
from kamicore.statuses import (
    CreateOrderStatus, DeliveryKind, RegisterSupplierStatus, UpdateSupplierStatus,
)

from .supplier_harness import simulated_supplier

SKU = Sku("gift", "Gift", "USD", 10_000_000, DeliveryKind.CODE,
          (ChannelPrice("web", 9_000_000),), low_stock_threshold=5, replenish_quantity=20)


@pytest.fixture(scope="module")
def supplier():
    with simulated_supplier(currency="USD", unit_cost_micros=4_200_000) as running:
        yield running


class _TaskMetrics:
    def task_failed(self, task: str) -> None:
        raise AssertionError(task)


class Shop:
    """A data file with SKU "gift" (8 codes) and supplier S-1 (the simulator) routing it."""

    def __init__(self, path, clock, supplier):
        self.path, self.clock = path, clock
        self.engine = Engine(path, clock=clock)
        Catalog(self.engine).create(SKU)
        self.engine.import_codes("gift", "first", [f"GIFT-{n:05d}" for n in range(8)])
        status, _, _ = Suppliers(self.engine).register(Supplier(
            "S-1", "Sim", "grpc", supplier.grpc_address, 2000, True, supplier.secret,
            (Route("gift", "S-1", "gift-card", 4_000_000, "USD"),)))
        assert status == RegisterSupplierStatus.REGISTERED
        self.orders = Orders(self.engine)
        self.count = 0
        self.dispatcher = self._dispatcher()

    def _dispatcher(self) -> Dispatcher:
        return Dispatcher(Config(data_dir=str(self.path)), self.engine, _TaskMetrics())

    def buy(self, quantity: int) -> CreateOrderStatus:
        self.count += 1
        request = validate_create(OrderRequest(f"k{self.count}", f"buyer{self.count}", "", "",
                                               [("gift", quantity)], 0), 900)
        return self.engine.run(self.engine.plan(
            create_order, (f"web/k{self.count}".encode(), "storefront:web", "web", request,
                           self.orders.risk), "storefront:web", full=lambda: None))[0]

    def restart(self) -> None:
        """kamicore stops (as after a crash: nothing but the data file survives) and starts."""
        self.engine.close()
        self.engine = Engine(self.path, clock=self.clock)
        self.dispatcher = self._dispatcher()

    def sellable(self) -> int:
        return self.engine.stock("gift").sellable


def _failures() -> float:
    return replenisher._replenisher_metrics().failures.labels("gift", "S-1")._value.get()


def _tick(shop: Shop) -> None:
    async def tick():
        await replenisher.replenish(shop.dispatcher)
        await connectors.close_all()
    asyncio.run(tick())


@pytest.fixture
def shop(tmp_path, clock, supplier):
    supplier.reset()
    supplier.configure(currency="USD", unit_cost_micros=4_200_000)
    opened = Shop(tmp_path / "data", clock, supplier)
    yield opened
    opened.engine.close()


def test_bought_codes_arrive_with_the_suppliers_batch_and_cost_and_sell(shop, supplier):
    assert shop.buy(4) == CreateOrderStatus.CREATED  # 8 -> 4 sellable, below 5
    _tick(shop)
    [(request_id, bought)] = supplier.state()["purchases"].items()
    assert (request_id, bought["product"], bought["quantity"], bought["received"]) == (
        "replenish/gift/1/1", "gift-card", 20, 1)
    assert shop.sellable() == 24
    [batch] = [batch for batch in shop.engine.batch_stock("gift") if batch.batch != "first"]
    assert (batch.batch, batch.supplier, batch.sellable) == (bought["batch_id"], "S-1", 20)
    with shop.engine.read() as txn, txn.cursor(db=shop.engine.dbs.batches) as cursor:
        [stored] = [record for record in map(shop.engine.codec.unpack_batch,
                                             cursor.iternext(keys=False, values=True))
                    if record["name"] == batch.batch.encode()]  # keeps what each code cost
    assert (stored["unit_cost_micros"], stored["valid_until_ms"]) == (4_200_000,
                                                                      batch.valid_until_ms)
    record = replenishment.read(shop.engine, "gift")
    assert (record["state"], record["batch_id"], record["unit_cost_micros"],
            record["imported"]) == ("closed", bought["batch_id"], 4_200_000, 20)
    assert shop.buy(24) == CreateOrderStatus.CREATED  # the bought codes sell
    _tick(shop)  # below the threshold again: the next request buys again
    assert list(supplier.state()["purchases"]) == ["replenish/gift/1/1", "replenish/gift/2/1"]


def test_codes_priced_in_another_currency_than_the_skus_are_not_imported(shop, supplier):
    supplier.configure(currency="EUR")  # a batch's unit cost is in its SKU's currency (USD)
    before = _failures()
    shop.buy(4)
    _tick(shop)
    assert shop.sellable() == 4 and _failures() == before + 1
    assert replenishment.read(shop.engine, "gift")["last_result"] == "IMPORT_REFUSED"


def test_a_failed_purchase_retries_with_backoff_and_counts(shop, supplier, clock):
    supplier.configure(failure_rate=1.0)
    before = _failures()
    shop.buy(4)
    _tick(shop)
    assert _failures() == before + 1
    record = replenishment.read(shop.engine, "gift")
    assert (record["request_id"], record["next_try_ms"]) == ("", clock.now_ms + 1000)
    _tick(shop)  # not due yet: nothing is sent
    assert supplier.state()["calls"]["PurchaseCodes"] == 1
    clock.advance(1000)
    _tick(shop)
    assert _failures() == before + 2
    assert replenishment.read(shop.engine, "gift")["next_try_ms"] == clock.now_ms + 2000
    supplier.configure(failure_rate=0.0)
    clock.advance(1999)
    _tick(shop)
    assert supplier.state()["calls"]["PurchaseCodes"] == 2 and shop.sellable() == 4
    clock.advance(1)
    _tick(shop)
    purchases = supplier.state()["purchases"]
    assert {request_id: bought["result"] for request_id, bought in purchases.items()} == {
        "replenish/gift/1/1": "FAILED", "replenish/gift/1/2": "FAILED",
        "replenish/gift/1/3": "SUCCEEDED"}
    assert shop.sellable() == 24 and _failures() == before + 2


def test_an_answer_lost_in_a_crash_is_asked_again_and_bought_once(shop, supplier, clock):
    # the supplier sells, but its answer comes after kamicore's deadline; then kamicore dies
    supplier.configure(timeout_rate=1.0, hang_ms=3000)
    status, _, _ = Suppliers(shop.engine).update(Supplier(
        "S-1", "Sim", "grpc", supplier.grpc_address, 300, True, b"",
        (Route("gift", "S-1", "gift-card", 4_000_000, "USD"),)))
    assert status == UpdateSupplierStatus.UPDATED
    shop.buy(4)
    _tick(shop)
    record = replenishment.read(shop.engine, "gift")
    assert (record["state"], record["request_id"], record["last_result"]) == (
        "open", "replenish/gift/1/1", "UNKNOWN")
    assert shop.sellable() == 4
    shop.restart()
    supplier.configure(timeout_rate=0.0)
    clock.advance(1000)
    _tick(shop)
    [(request_id, bought)] = supplier.state()["purchases"].items()
    assert (request_id, bought["received"]) == ("replenish/gift/1/1", 2)  # asked, not bought
    assert shop.sellable() == 24
    assert replenishment.read(shop.engine, "gift")["state"] == "closed"


def test_a_crash_before_the_import_commits_buys_and_imports_once(shop, supplier,
                                                                 monkeypatch):
    shop.buy(4)
    with monkeypatch.context() as crashing:
        def crash(*args):
            raise SystemExit("killed before the import's commit")
        crashing.setattr(replenishment, "deliver", crash)
        with pytest.raises(SystemExit):
            _tick(shop)
    assert shop.sellable() == 4 and replenishment.read(shop.engine, "gift")["state"] == "open"
    shop.restart()
    _tick(shop)
    [(_, bought)] = supplier.state()["purchases"].items()
    record = replenishment.read(shop.engine, "gift")
    assert (bought["received"], shop.sellable()) == (2, 24)
    assert (record["state"], record["imported"], record["duplicates"]) == ("closed", 20, 0)


def test_the_skus_own_setting_stops_it(shop, supplier):
    Catalog(shop.engine).create(dataclasses.replace(SKU, sku_id="quiet", replenish_quantity=0))
    shop.engine.import_codes("quiet", "q", ["QUIET-0001"])
    _tick(shop)
    assert supplier.state()["purchases"] == {}
