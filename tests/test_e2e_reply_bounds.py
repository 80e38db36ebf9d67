"""The largest replies, end to end, on a server of its own: SKUs, orders, batches and answers
at the limits (every text at its most bytes, every list at its most items) still come back,
because a page ends before it would pass what a client accepts (ListSkus), an order's codes are
listed 10,000 at a time (GetOrder, GetDelivery), and a list that could grow without end is cut
with a count (GetStock's batches, ImportCodes' rejected rows). kamicore.limits computes each
reply's bound; tests/test_reply_bounds.py holds the model to the protos."""

from __future__ import annotations

import concurrent.futures

import pytest
from kamicore import limits
from kamicore.v1 import catalog_pb2, inventory_pb2, orders_pb2

from .e2e_support import O, R, largest_sku, sized
from .server_harness import Server, import_codes, import_requests, pay_request

pool_threads = 8
ordered_codes = limits.codes_per_order_max
listed_skus = 250  # at their largest, more than 4 MiB of SKUs: one page could not carry them
# codes for replacements: enough to take the largest order past 4 MiB of revealed codes
replacement_stock = 3_000


CHANNEL = sized("shop", limits.binding_bytes_max, "s")
TERMINAL = sized("till", limits.terminal_bytes_max, "t")


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("bounds") / "data", name="bounds").start()
    try:
        yield {"server": server, "admin": server.client(server.admin_key),
               "shop": server.client(server.create_key("storefront", CHANNEL)[0]),
               "till": server.client(server.create_key("pos", TERMINAL)[0])}
    finally:
        assert server.stop() == 0


def _create(admin, sku: catalog_pb2.Sku) -> None:
    reply = admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=sku))
    assert reply.status == catalog_pb2.CREATE_SKU_STATUS_CREATED, reply.status


def _all_pages(client, page_size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        reply = client.catalog.ListSkus(catalog_pb2.ListSkusRequest(page_size=page_size,
                                                                    page_token=token))
        assert reply.ByteSize() <= limits.reply_bytes_worst["Catalog/ListSkus"]
        pages.append([sku.sku_id for sku in reply.skus])
        token = reply.next_page_token
        if not token:
            return pages


def test_list_skus_pages_skus_at_their_largest_by_bytes_and_misses_none(big):
    admin = big["admin"]
    skus = [largest_sku(f"list-{n:04d}", CHANNEL) for n in range(listed_skus)]
    assert sum(sku.ByteSize() for sku in skus) > limits.reply_bytes_max
    with concurrent.futures.ThreadPoolExecutor(pool_threads) as pool:
        list(pool.map(lambda sku: _create(admin, sku), skus))
    stored = admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=skus[0].sku_id))
    assert stored.ByteSize() <= limits.reply_bytes_worst["Catalog/CreateSku"]
    expected = sorted(sku.sku_id for sku in skus)
    for client in (admin, big["shop"]):  # the admin sees every price, the shop its own
        pages = _all_pages(client, limits.skus_per_page_max)
        listed = [sku_id for page in pages for sku_id in page if sku_id.startswith("list-")]
        assert listed == expected
    admin_pages = _all_pages(admin, limits.skus_per_page_max)
    assert len(admin_pages) > 1 and all(admin_pages)  # cut by bytes, not by page_size


@pytest.fixture(scope="module")
def paid(big):
    """A paid order at its largest: every text at its limit, 100 lines, 10,000 codes of 128
    bytes; stock left over for its replacements."""
    admin, shop = big["admin"], big["shop"]
    sku = largest_sku("order-sku", CHANNEL)
    _create(admin, sku)
    codes = [sized(f"BIG-{n:06d}-", limits.code_bytes_max, "Q")
             for n in range(ordered_codes + replacement_stock)]
    import_codes(admin, sku.sku_id, codes, batch_id="order-batch", chunk_codes=5_000)
    lines_max = limits.lines_per_order_max
    created = shop.orders.CreateOrder(orders_pb2.CreateOrderRequest(
        idempotency_key=sized("big-order", limits.idempotency_key_bytes_max),
        buyer=orders_pb2.Buyer(account_id=sized("buyer", limits.account_bytes_max),
                               ip=sized("ip", limits.buyer_field_bytes_max),
                               device_id=sized("device", limits.buyer_field_bytes_max)),
        lines=[orders_pb2.OrderLine(sku_id=sku.sku_id, quantity=ordered_codes // lines_max)
               for _ in range(lines_max)]))
    assert created.status == O.CREATE_ORDER_STATUS_CREATED
    reply = shop.orders.ConfirmPayment(pay_request(
        created.order, sized("pay", limits.payment_reference_bytes_max)))
    assert reply.status == O.CONFIRM_PAYMENT_STATUS_PAID
    return {"codes": codes, "reply": reply, "order_id": created.order.order_id}


def test_an_order_at_its_largest_is_delivered_whole_in_one_reply(big, paid):
    shop, reply = big["shop"], paid["reply"]
    assert len(reply.order.codes) == reply.order.codes_total == ordered_codes
    assert {code.code for code in reply.order.codes} <= set(paid["codes"])
    # near the bound: this is the largest reply there is
    assert limits.reply_bytes_max * 3 // 4 < reply.ByteSize() \
        <= limits.reply_bytes_worst["Orders/ConfirmPayment"]
    again = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(order_id=paid["order_id"]))
    assert again.order.codes == reply.order.codes
    masked = shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=paid["order_id"]))
    assert [code.code_id for code in masked.order.codes] == [
        code.code_id for code in reply.order.codes]
    assert not any(code.code for code in masked.order.codes)


def test_a_redeem_batch_at_its_largest(big, paid):
    """The longest terminal and request ids, on the most codes a batch takes."""
    delivered = paid["reply"].order.codes[:limits.codes_per_batch_max]
    batch = big["till"].redemption.RedeemBatch(R.RedeemBatchRequest(items=[
        R.RedeemRequest(code=code.code, request_id=sized(f"r-{n}", limits.request_id_bytes_max))
        for n, code in enumerate(delivered)]))
    assert {result.status for result in batch.results} == {R.REDEEM_STATUS_REDEEMED}
    assert {result.redeemed_by_terminal for result in batch.results} == {TERMINAL}
    assert batch.ByteSize() <= limits.reply_bytes_worst["Redemption/RedeemBatch"]


def _report(shop, order_id: str, codes) -> list:
    """Report each code invalid; their replacements."""
    def report(code):
        reply = shop.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
            order_id=order_id, code_id=code.code_id))
        assert reply.status == O.REPORT_INVALID_STATUS_REISSUED
        return reply.replacement
    with concurrent.futures.ThreadPoolExecutor(pool_threads) as pool:
        return list(pool.map(report, codes))


def _delivery_pages(shop, order_id: str) -> list:
    """Every GetDelivery page of the order, following codes_offset to the end."""
    pages, offset = [], 0
    while True:
        page = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(order_id=order_id,
                                                                     codes_offset=offset))
        assert page.status == O.ORDER_LOOKUP_STATUS_FOUND
        assert page.ByteSize() <= limits.reply_bytes_worst["Orders/ConfirmPayment"]
        if not page.order.codes:
            return pages
        pages.append(page)
        offset += len(page.order.codes)


def _check_pages(pages, first_reply, replaced) -> None:
    """The pages list the order's first codes, then the replacements, each code once."""
    total = ordered_codes + len(replaced)
    assert [len(page.order.codes) for page in pages] == [ordered_codes, len(replaced)]
    assert {page.order.codes_total for page in pages} == {total}
    delivered = [code for page in pages for code in page.order.codes]
    assert [code.code_id for code in delivered[:ordered_codes]] == [
        code.code_id for code in first_reply.order.codes]
    assert sorted((code.code_id, code.code) for code in delivered[ordered_codes:]) == sorted(
        (code.code_id, code.code) for code in replaced)
    assert len({code.code for code in delivered}) == total


def test_replacements_grow_an_order_past_one_reply_and_its_codes_are_paged(big, paid):
    """Each reported code adds its replacement to the order, so an order can hold more codes
    than one reply lists: its codes come 10,000 at a time, from codes_offset."""
    shop, order_id, first_reply = big["shop"], paid["order_id"], paid["reply"]
    replaced = _report(shop, order_id, first_reply.order.codes[-3:])  # not redeemed above
    assert {code.code for code in replaced} <= set(paid["codes"])
    _check_pages(_delivery_pages(shop, order_id), first_reply, replaced)
    tail = shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id,
                                                           codes_offset=ordered_codes))
    assert sorted(code.code_id for code in tail.order.codes) == sorted(
        code.code_id for code in replaced)  # reported at once: in commit order
    assert not any(code.code for code in tail.order.codes)  # GetOrder masks
    past_the_end = shop.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=order_id, codes_offset=2 * ordered_codes))
    assert past_the_end.status == O.ORDER_LOOKUP_STATUS_FOUND and not past_the_end.order.codes


@pytest.mark.slow
def test_an_order_grown_past_what_one_reply_carries_is_delivered_in_pages(big, paid):
    """Enough replacements that the order's revealed codes pass 4 MiB: one reply could not
    carry them (a client would get RESOURCE_EXHAUSTED), the pages do."""
    shop, order_id, first_reply = big["shop"], paid["order_id"], paid["reply"]
    pages = _delivery_pages(shop, order_id)
    replaced = [code for page in pages[1:] for code in page.order.codes]
    code_bytes = len(first_reply.order.codes[-1].SerializeToString()) + 3
    needed = (limits.reply_bytes_max - sum(page.ByteSize() for page in pages)) // code_bytes
    candidates = first_reply.order.codes[limits.codes_per_batch_max:-len(replaced) or None]
    assert len(candidates) > needed + 100 and replacement_stock > len(replaced) + needed + 100
    replaced += _report(shop, order_id, candidates[-(needed + 100):])
    pages = _delivery_pages(shop, order_id)
    assert sum(page.ByteSize() for page in pages) > limits.reply_bytes_max
    _check_pages(pages, first_reply, replaced)


def test_import_lists_the_first_rejected_rows_and_counts_them_all(big):
    admin = big["admin"]
    sku = largest_sku("rejects-sku", CHANNEL)
    _create(admin, sku)
    rows = 2 * limits.rejected_rows_listed_max
    reply = import_codes(admin, sku.sku_id, ["bad\x01code"] * rows, batch_id="rejects",
                         chunk_codes=5_000)
    assert (reply.imported, reply.rejected, reply.rows_processed) == (0, rows, rows)
    assert [row.row for row in reply.rejected_rows] == list(range(
        limits.rejected_rows_listed_max))
    assert reply.ByteSize() <= limits.reply_bytes_worst["Inventory/ImportCodes"]


def test_get_stock_lists_the_first_batches_and_counts_the_rest(big):
    admin = big["admin"]
    sku = largest_sku("batches-sku", CHANNEL)
    _create(admin, sku)
    batches = limits.batches_listed_max + 2

    def one_batch(number: int):
        header = inventory_pb2.ImportHeader(
            sku_id=sku.sku_id, batch_id=sized(f"b-{number:05d}", limits.name_bytes_max),
            supplier_id=sku.supplier_ids[0])
        reply = admin.inventory.ImportCodes(import_requests(header, [f"BATCH-{number:05d}"]))
        assert reply.imported == 1, reply
    with concurrent.futures.ThreadPoolExecutor(pool_threads) as pool:
        list(pool.map(one_batch, range(batches)))
    stock = admin.stock(sku.sku_id)
    assert (len(stock.batches), stock.batches_omitted, stock.sellable) == (
        limits.batches_listed_max, 2, batches)
    assert stock.ByteSize() <= limits.reply_bytes_worst["Inventory/GetStock"]
