"""The Inventory service end to end, against the shared `kamicore serve` (tests/conftest.py):
imports, stock, freezing and voiding codes, key rotation (what suppliers, storefronts and
partners may import and see: tests/test_e2e_authorization.py)."""

from __future__ import annotations

import time

from kamicore.v1 import catalog_pb2, common_pb2, inventory_pb2, orders_pb2

from .e2e_support import CREATED, FOUND, R, assert_no_plaintext, plaintexts, uid
from .server_harness import (
    buy,
    counts,
    create_sku,
    import_codes,
    new_codes,
    order_request,
    stocked_sku,
)


def test_import_codes_counts_imported_duplicates_and_rejected_rows(c):
    sku_id = uid("inv-import")
    create_sku(c.admin, sku_id)
    a, b, d = new_codes(3)
    chunks = [[a, b, "", "X" * 129], [d, a.lower().replace("-", " "), "bad\x01code", "- -"]]
    header = inventory_pb2.ImportHeader(sku_id=sku_id, batch_id=uid("batch"), supplier_id="S-1",
                                        unit_cost_micros=40_000_000)

    def stream():
        yield inventory_pb2.ImportCodesRequest(header=header)
        for chunk in chunks:
            yield inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=chunk))

    reply = c.admin.inventory.ImportCodes(stream())
    assert reply.status == inventory_pb2.IMPORT_STATUS_OK
    assert (reply.imported, reply.duplicates, reply.rejected) == (3, 1, 4)
    assert [(row.row, row.status) for row in reply.rejected_rows] == [
        (2, inventory_pb2.IMPORT_CODE_STATUS_EMPTY),
        (3, inventory_pb2.IMPORT_CODE_STATUS_TOO_LONG),
        (6, inventory_pb2.IMPORT_CODE_STATUS_CONTROL_CHARACTER),
        (7, inventory_pb2.IMPORT_CODE_STATUS_EMPTY)]
    assert_no_plaintext(reply.SerializeToString(), [a, b, d], "the import reply")
    again = c.admin.inventory.ImportCodes(stream())  # re-sending skips duplicates
    assert (again.status, again.imported, again.duplicates, again.rejected) == (
        inventory_pb2.IMPORT_STATUS_OK, 0, 4, 4)
    stock = c.admin.stock(sku_id)
    assert counts(stock)["AVAILABLE"] == 3 and stock.sellable == 3


def test_import_codes_batch_mismatch_and_sku_not_found_import_nothing(c):
    sku_id = uid("inv-mismatch")
    create_sku(c.admin, sku_id)
    batch_id = uid("batch")
    import_codes(c.admin, sku_id, new_codes(2), batch_id=batch_id, unit_cost_micros=40_000_000)
    before = c.admin.stock(sku_id)
    mismatch = import_codes(c.admin, sku_id, new_codes(3), batch_id=batch_id,
                            unit_cost_micros=41_000_000, expect_ok=False)
    assert mismatch.status == inventory_pb2.IMPORT_STATUS_BATCH_MISMATCH
    assert mismatch.imported == 0
    other_sku = uid("inv-mismatch-other")
    create_sku(c.admin, other_sku)
    moved = import_codes(c.admin, other_sku, new_codes(1), batch_id=batch_id,
                         unit_cost_micros=40_000_000, expect_ok=False)
    # batch ids are the supplier's: the same id under another SKU is another batch or a
    # mismatch, never codes counted under the wrong SKU
    assert moved.status in (inventory_pb2.IMPORT_STATUS_OK,
                            inventory_pb2.IMPORT_STATUS_BATCH_MISMATCH)
    assert c.admin.stock(sku_id) == before
    unknown = uid("inv-unknown")
    missing = import_codes(c.admin, unknown, new_codes(2), expect_ok=False)
    assert missing.status == inventory_pb2.IMPORT_STATUS_SKU_NOT_FOUND and missing.imported == 0
    assert c.admin.stock(unknown).status == inventory_pb2.STOCK_STATUS_NOT_FOUND


def test_get_stock_by_state_and_batch_sellable_and_low_stock(c):
    sku_id = uid("inv-stock")
    create_sku(c.admin, sku_id, low_stock=5)
    now_ms = int(time.time() * 1000)
    soon_ms = now_ms + 30 * 86_400_000
    import_codes(c.admin, sku_id, new_codes(3), batch_id=f"{sku_id}-expiring", supplier_id="S-1",
                 valid_until_ms=soon_ms)
    import_codes(c.admin, sku_id, new_codes(2), batch_id=f"{sku_id}-forever", supplier_id="S-2")
    import_codes(c.admin, sku_id, new_codes(4), batch_id=f"{sku_id}-expired", supplier_id="S-3",
                 valid_from_ms=now_ms - 2_000_000, valid_until_ms=now_ms - 1_000_000)
    stock = c.admin.stock(sku_id)
    assert stock.status == inventory_pb2.STOCK_STATUS_FOUND
    assert counts(stock) == {"AVAILABLE": 9, "RESERVED": 0, "SOLD": 0, "REDEEMED": 0,
                             "FROZEN": 0, "INVALID": 0, "VOID": 0}
    assert (stock.sellable, stock.expired_available, stock.low_stock) == (5, 4, False)
    assert stock.soonest_valid_until_ms == soon_ms
    batches = {batch.batch_id.removeprefix(f"{sku_id}-"): batch for batch in stock.batches}
    assert set(batches) == {"expiring", "forever", "expired"}
    assert batches["expiring"].supplier_id == "S-1"
    assert batches["expiring"].valid_until_ms == soon_ms
    assert batches["forever"].valid_until_ms == 0
    shop = c.web
    paid = buy(shop, sku_id, 1)  # FEFO: the soonest-expiring sellable code
    created = shop.orders.CreateOrder(order_request(uid("stock-hold"), sku_id, 1))
    assert created.status == CREATED
    stock = c.admin.stock(sku_id)
    assert counts(stock)["AVAILABLE"] == 7 and counts(stock)["SOLD"] == 1
    assert counts(stock)["RESERVED"] == 1
    assert sum(counts(stock).values()) == 9  # always sums to what was imported
    assert (stock.sellable, stock.low_stock) == (3, True)
    by_batch = {batch.batch_id.removeprefix(f"{sku_id}-"): {
        common_pb2.CodeState.Name(entry.state): entry.count for entry in batch.counts}
        for batch in stock.batches}
    assert by_batch["expiring"] == {"CODE_STATE_AVAILABLE": 1, "CODE_STATE_SOLD": 1,
                                    "CODE_STATE_RESERVED": 1}
    assert by_batch["forever"] == {"CODE_STATE_AVAILABLE": 2}
    assert by_batch["expired"] == {"CODE_STATE_AVAILABLE": 4}
    assert paid.order.codes[0].valid_until_ms == soon_ms
    assert c.admin.stock(uid("inv-none")).status == inventory_pb2.STOCK_STATUS_NOT_FOUND
    empty_id = uid("inv-empty")
    create_sku(c.admin, empty_id, low_stock=1)
    empty = c.admin.stock(empty_id)  # a SKU without codes yet: found, all zeros, low
    assert empty.status == inventory_pb2.STOCK_STATUS_FOUND
    assert set(counts(empty).values()) == {0} and len(counts(empty)) == 7
    assert (empty.sellable, empty.low_stock, len(empty.batches)) == (0, True, 0)


def test_soonest_valid_until_of_codes_that_never_expire_is_zero(c):
    sku_id = uid("inv-never")
    stocked_sku(c.admin, sku_id, 2)
    stock = c.admin.stock(sku_id)
    assert stock.batches[0].valid_until_ms == 0
    assert stock.soonest_valid_until_ms == 0


def test_freeze_unfreeze_and_void_each_status(c):
    sku_id = uid("inv-ops")
    codes = stocked_sku(c.admin, sku_id, 5)
    paid = buy(c.web, sku_id, 2)
    sold_a, sold_b = paid.order.codes
    held = c.web.orders.CreateOrder(order_request(uid("ops-hold"), sku_id, 1)).order.codes[0]
    available = [code for code in codes if code not in plaintexts(paid.order)]
    lookup = {code: c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
              for code in available}
    available = [code for code in available
                 if lookup[code].state == common_pb2.CODE_STATE_AVAILABLE]
    assert len(available) == 2
    def ref_id(code_id):
        return inventory_pb2.CodeRef(code_id=code_id)

    def ref_code(code):
        return inventory_pb2.CodeRef(code=code)

    frozen = c.admin.inventory.FreezeCodes(inventory_pb2.CodeOpRequest(codes=[
        ref_code(sold_a.code.lower().replace("-", " ")),  # a leak report, as typed
        ref_id(lookup[available[0]].code_id),
        ref_id(held.code_id),
        ref_id(2**62), ref_code(""), ref_code(uid("NOT-A-CODE"))], reason="leak report"))
    assert [(result.status, result.state) for result in frozen.results] == [
        (inventory_pb2.CODE_OP_STATUS_DONE, common_pb2.CODE_STATE_FROZEN),
        (inventory_pb2.CODE_OP_STATUS_DONE, common_pb2.CODE_STATE_FROZEN),
        (inventory_pb2.CODE_OP_STATUS_WRONG_STATE, common_pb2.CODE_STATE_RESERVED),
        (inventory_pb2.CODE_OP_STATUS_NOT_FOUND, 0),
        (inventory_pb2.CODE_OP_STATUS_MALFORMED, 0),
        (inventory_pb2.CODE_OP_STATUS_NOT_FOUND, 0)]
    assert frozen.results[0].code_id == sold_a.code_id
    assert frozen.results[3].code_id == 0
    stock = c.admin.stock(sku_id)
    assert counts(stock)["FROZEN"] == 2 and stock.sellable == 1
    again = c.admin.inventory.FreezeCodes(inventory_pb2.CodeOpRequest(
        codes=[ref_id(sold_a.code_id)]))
    assert again.results[0].status == inventory_pb2.CODE_OP_STATUS_WRONG_STATE
    assert again.results[0].state == common_pb2.CODE_STATE_FROZEN

    unfrozen = c.admin.inventory.UnfreezeCodes(inventory_pb2.CodeOpRequest(codes=[
        ref_id(sold_a.code_id), ref_code(available[0]), ref_id(sold_b.code_id),
        ref_id(2**62), ref_code("")]))
    assert [(result.status, result.state) for result in unfrozen.results] == [
        (inventory_pb2.CODE_OP_STATUS_DONE, common_pb2.CODE_STATE_SOLD),  # back where it was
        (inventory_pb2.CODE_OP_STATUS_DONE, common_pb2.CODE_STATE_AVAILABLE),
        (inventory_pb2.CODE_OP_STATUS_WRONG_STATE, common_pb2.CODE_STATE_SOLD),
        (inventory_pb2.CODE_OP_STATUS_NOT_FOUND, 0),
        (inventory_pb2.CODE_OP_STATUS_MALFORMED, 0)]

    voided = c.admin.inventory.VoidCodes(inventory_pb2.CodeOpRequest(codes=[
        ref_id(sold_b.code_id), ref_code(available[1]), ref_id(2**62), ref_code("bad\x01")]))
    assert [(result.status, result.state) for result in voided.results] == [
        (inventory_pb2.CODE_OP_STATUS_DONE, common_pb2.CODE_STATE_VOID),
        (inventory_pb2.CODE_OP_STATUS_WRONG_STATE, common_pb2.CODE_STATE_AVAILABLE),
        (inventory_pb2.CODE_OP_STATUS_NOT_FOUND, 0),
        (inventory_pb2.CODE_OP_STATUS_MALFORMED, 0)]
    stock = counts(c.admin.stock(sku_id))
    assert stock == {"AVAILABLE": 2, "RESERVED": 1, "SOLD": 1, "REDEEMED": 0, "FROZEN": 0,
                     "INVALID": 0, "VOID": 1}
    assert_no_plaintext(str(frozen) + str(unfrozen) + str(voided), codes, "code op replies")


def test_rotate_keys_rewraps_every_batch_and_codes_stay_readable_on_both_workers(server, c,
                                                                                  keys):
    sku_id = uid("inv-rotate")
    stocked_sku(c.admin, sku_id, 12)
    paid = buy(c.web, sku_id, 2)
    batches = 0
    token = ""
    while True:
        page = c.admin.catalog.ListSkus(catalog_pb2.ListSkusRequest(page_size=1000,
                                                                    page_token=token))
        batches += sum(len(c.admin.stock(sku.sku_id).batches) for sku in page.skus)
        token = page.next_page_token
        if not token:
            break
    rotated = c.admin.inventory.RotateKeys(inventory_pb2.RotateKeysRequest())
    assert rotated.rewrapped_batches == batches
    for _ in range(6):  # fresh connections land on either worker
        shop = server.client(keys["web"], fresh=True)
        delivery = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=paid.order.order_id))
        assert delivery.status == FOUND
        assert plaintexts(delivery.order) == plaintexts(paid.order)
        fresh = buy(shop, sku_id, 1)
        verified = server.client(keys["pos"], fresh=True).redemption.VerifyCode(
            R.VerifyCodeRequest(code=fresh.order.codes[0].code))
        assert verified.status == R.VERIFY_STATUS_FOUND
        assert verified.state == common_pb2.CODE_STATE_SOLD
    # a batch imported after the rotation is sealed under the new key and sells too
    new_batch = new_codes(2)
    import_codes(c.admin, sku_id, new_batch, batch_id=f"{sku_id}-after-rotation")
    later = buy(c.web, sku_id, 6)  # everything left, the new batch included
    assert set(new_batch) <= set(plaintexts(later.order))
