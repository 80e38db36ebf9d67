"""A full data file, end to end: every write RPC answers its own STORAGE_FULL status (never
INTERNAL or UNKNOWN), reads keep working, and the file stays sound.

A real `kamicore serve` runs with a 4 MiB map. The test holds a read transaction open on the
data file from its own process while it fills the file: LMDB cannot reuse pages freed after
that snapshot, so once a one-code import no longer fits, no write fits — the state a merchant's
server reaches when its disk reservation runs out, made deterministic.
"""

from __future__ import annotations

import lmdb
import pytest

from kamicore.engine import Engine
from kamicore.statuses import (
    CancelOrderStatus, CodeOpStatus, CodeState, ConfirmPaymentStatus, CreateOrderStatus,
    CreateSkuStatus, ImportStatus, OrderLookupStatus, RedeemStatus, ReportInvalidStatus,
    RotateKeysStatus, SkuLookupStatus, StockStatus, VerifyStatus,
)
from kamicore.v1 import catalog_pb2, inventory_pb2, orders_pb2, redemption_pb2

from .server_harness import (
    Server, buy, create_sku, import_codes, new_codes, order_request, pay_request, sku_message,
    stocked_sku,
)

map_size_bytes = 4 * 2**20
fill_chunk_codes = (500, 50, 5, 1)  # smaller and smaller imports until one code does not fit
prepared = 12  # orders and codes made per write RPC before the file fills
attempts_max = 200  # writes that still fit after the fill; each consumes pages (see above)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """A server whose data file is full, with everything each write RPC needs made first."""
    data_dir = tmp_path_factory.mktemp("full") / "data"
    server = Server(data_dir, settings={"map_size_bytes": str(map_size_bytes)}).start()
    try:
        admin = server.client(server.admin_key)
        shop = server.client(server.create_key("storefront", "web")[0])
        till = server.client(server.create_key("pos", "T-FULL")[0])
        codes = stocked_sku(admin, "full-sku", 8 * prepared)
        spare = stocked_sku(admin, "spare-sku", 2 * prepared)  # never sold
        frozen = admin.inventory.FreezeCodes(_refs(spare[prepared:]))
        assert {result.status for result in frozen.results} == {CodeOpStatus.DONE}
        held = [shop.orders.CreateOrder(order_request(f"held-{n}", "full-sku")).order
                for n in range(2 * prepared)]
        paid = [buy(shop, "full-sku", quantity=prepared).order for _ in range(3)]
        pin = _Pin(data_dir)
        try:
            _fill(admin)
            yield {"server": server, "pin": pin, "admin": admin, "shop": shop, "till": till,
                   "codes": codes,
                   "spare": spare[:prepared], "frozen": spare[prepared:],
                   "to_pay": held[:prepared], "to_cancel": held[prepared:], "paid": paid}
        finally:
            pin.release()
    finally:
        assert server.stop() == 0


class _Pin:
    """A read transaction on the data file from this process (see the module docstring)."""

    def __init__(self, data_dir):
        self.env = lmdb.open(str(data_dir), readonly=True, lock=True, max_dbs=0)
        self.txn = self.env.begin()

    def release(self) -> None:
        if self.env is not None:
            self.txn.abort()
            self.env.close()
            self.env = None


def _fill(admin) -> None:
    create_sku(admin, "filler-sku")
    for chunk in fill_chunk_codes:
        for _ in range(10_000):
            reply = import_codes(admin, "filler-sku", new_codes(chunk, "FILL"),
                                 batch_id="filler-batch", chunk_codes=chunk, expect_ok=False)
            if reply.status == ImportStatus.STORAGE_FULL:
                break
            assert reply.status == ImportStatus.OK, reply
        else:
            pytest.fail(f"a {map_size_bytes}-byte map never filled")


def until_full(answers, done, full_status):
    """Make writes until one answers `full_status`: each earlier one must have answered
    `done` (it still fitted, and used up pages). Returns how many fitted."""
    for fitted, status in enumerate(answers):
        if status == full_status:
            return fitted
        assert status == done, (status, full_status)
        assert fitted < attempts_max, "writes kept fitting in a full file"
    pytest.fail("ran out of prepared inputs before the file was full")


def _refs(codes) -> inventory_pb2.CodeOpRequest:
    return inventory_pb2.CodeOpRequest(codes=[inventory_pb2.CodeRef(code=code)
                                              for code in codes])


def test_catalog_writes_answer_storage_full(full):
    admin = full["admin"]
    until_full((admin.catalog.CreateSku(_create(f"new-sku-{n}")).status
                for n in range(attempts_max + 1)),
               CreateSkuStatus.CREATED, CreateSkuStatus.STORAGE_FULL)
    until_full((admin.catalog.UpdateSku(_update("full-sku", f"Renamed {n}")).status
                for n in range(attempts_max + 1)),
               SkuLookupStatus.FOUND, SkuLookupStatus.STORAGE_FULL)
    refused = admin.catalog.CreateSku(_create("refused-sku"))
    assert refused.status == CreateSkuStatus.STORAGE_FULL and not refused.HasField("sku")
    assert admin.catalog.GetSku(_get("refused-sku")).status == SkuLookupStatus.NOT_FOUND


def test_inventory_writes_answer_storage_full(full):
    admin = full["admin"]
    imported = import_codes(admin, "spare-sku", new_codes(1), batch_id="spare-sku-batch",
                            expect_ok=False)
    assert imported.status == ImportStatus.STORAGE_FULL and imported.imported == 0
    sold = [code.code for order in full["paid"][:1] for code in order.codes]
    for call, codes in ((admin.inventory.FreezeCodes, full["spare"]),
                        (admin.inventory.UnfreezeCodes, full["frozen"]),
                        (admin.inventory.VoidCodes, sold)):
        until_full((call(_refs([code])).results[0].status for code in codes),
                   CodeOpStatus.DONE, CodeOpStatus.STORAGE_FULL)
    fitted = until_full((admin.inventory.RotateKeys(inventory_pb2.RotateKeysRequest()).status
                         for _ in range(attempts_max + 1)),
                        RotateKeysStatus.ROTATED, RotateKeysStatus.STORAGE_FULL)
    assert fitted < attempts_max


def test_order_writes_answer_storage_full(full):
    shop = full["shop"]
    until_full((shop.orders.CreateOrder(order_request(f"after-full-{n}", "full-sku")).status
                for n in range(attempts_max + 1)),
               CreateOrderStatus.CREATED, CreateOrderStatus.STORAGE_FULL)
    until_full((shop.orders.ConfirmPayment(pay_request(order)).status
                for order in full["to_pay"]),
               ConfirmPaymentStatus.PAID, ConfirmPaymentStatus.STORAGE_FULL)
    until_full((shop.orders.CancelOrder(orders_pb2.CancelOrderRequest(
                    order_id=order.order_id)).status for order in full["to_cancel"]),
               CancelOrderStatus.CANCELLED, CancelOrderStatus.STORAGE_FULL)
    paid = full["paid"][1]
    # every reveal is audited first: one that cannot be audited shows nothing
    until_full((shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
                    order_id=paid.order_id)).status for _ in range(attempts_max + 1)),
               OrderLookupStatus.FOUND, OrderLookupStatus.STORAGE_FULL)
    delivery = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(order_id=paid.order_id))
    assert delivery.status == OrderLookupStatus.STORAGE_FULL and not delivery.HasField("order")
    until_full((shop.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
                    order_id=paid.order_id, code_id=code.code_id)).status
                for code in paid.codes),
               ReportInvalidStatus.REISSUED, ReportInvalidStatus.STORAGE_FULL)
    # what did not fit changed nothing: the last order to pay is still held
    reply = shop.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=full["to_pay"][-1].order_id))
    assert reply.order.state == orders_pb2.ORDER_STATE_RESERVED


def test_redemptions_answer_storage_full(full):
    till = full["till"]
    codes = [code.code for code in full["paid"][2].codes]
    until_full((till.redemption.Redeem(redemption_pb2.RedeemRequest(
                    code=code, request_id=f"r-{code}")).status for code in codes[:-1]),
               RedeemStatus.REDEEMED, RedeemStatus.STORAGE_FULL)
    last = codes[-1]
    batch = till.redemption.RedeemBatch(redemption_pb2.RedeemBatchRequest(items=[
        redemption_pb2.RedeemRequest(code=last, request_id="batch-1"),
        redemption_pb2.RedeemRequest(code="NO-SUCH-CODE", request_id="batch-2")]))
    assert [result.status for result in batch.results] == [RedeemStatus.STORAGE_FULL] * 2
    streamed = list(till.redemption.RedeemStream(iter([
        redemption_pb2.RedeemRequest(code=last, request_id="stream-1")])))
    assert [reply.status for reply in streamed] == [RedeemStatus.STORAGE_FULL]
    verified = till.redemption.VerifyCode(redemption_pb2.VerifyCodeRequest(code=last))
    assert verified.status == VerifyStatus.FOUND and verified.state == CodeState.SOLD


def test_reads_keep_working_and_the_file_stays_sound(full):
    admin = full["admin"]
    stock = admin.stock("full-sku")
    assert stock.status == StockStatus.FOUND
    assert sum(entry.count for entry in stock.counts) == len(full["codes"])
    listed = admin.catalog.ListSkus(_list())
    assert {sku.sku_id for sku in listed.skus} >= {"full-sku", "spare-sku", "filler-sku"}
    order = full["shop"].orders.GetOrder(
        orders_pb2.GetOrderRequest(order_id=full["paid"][0].order_id))
    assert order.order.state == orders_pb2.ORDER_STATE_PAID
    # once the old snapshot is gone, the pages earlier commits freed are reused: writes fit
    full["pin"].release()
    renamed = admin.catalog.UpdateSku(_update("full-sku", "Space again"))
    assert renamed.status == SkuLookupStatus.FOUND
    with Engine(full["server"].data_dir, map_size_bytes=map_size_bytes) as engine:
        assert engine.check() == []


def _create(sku_id: str):
    return catalog_pb2.CreateSkuRequest(sku=sku_message(sku_id))


def _update(sku_id: str, name: str):
    return catalog_pb2.UpdateSkuRequest(sku=sku_message(sku_id, name=name))


def _get(sku_id: str):
    return catalog_pb2.GetSkuRequest(sku_id=sku_id)


def _list():
    return catalog_pb2.ListSkusRequest(page_size=100)
