"""kamicore's gRPC server end to end: a real `kamicore serve` (supervisor + 2 workers) on
127.0.0.1, called through the generated stubs with real API keys, asserting what a storefront,
a POS terminal or an operator would notice.

One server serves most tests (each test uses its own SKUs, idempotency keys and request ids, so
tests stay independent); the SIGTERM test runs servers of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import signal
import time
import types

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kamicore import auth
from kamicore.v1 import (
    catalog_pb2, common_pb2, inventory_pb2, orders_pb2, orders_pb2_grpc,
    redemption_pb2, redemption_pb2_grpc,
)

from .server_harness import (
    ISSUED_CODES, CURRENCY, PRICE_MICROS, Client, Server, buy, cli, counts, create_sku,
    health_pb2, health_pb2_grpc, import_codes, new_codes, order_request,
    pay_request, sku_message, stocked_sku,
)

O = orders_pb2  # short names for the enums used on every other line
R = redemption_pb2
CREATED = orders_pb2.CREATE_ORDER_STATUS_CREATED
PAID = orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
FOUND = orders_pb2.ORDER_LOOKUP_STATUS_FOUND
NOT_FOUND = orders_pb2.ORDER_LOOKUP_STATUS_NOT_FOUND
hold_expiry_wait_seconds = 15.0  # the sweeper runs every second; generous for a slow machine


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def plaintexts(order: orders_pb2.Order) -> list[str]:
    return [code.code for code in order.codes]


def assert_no_plaintext(text: str | bytes, codes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    upper = text.upper()
    for code in codes:
        for form in (code.upper(), code.replace("-", "").upper()):
            if form in upper:  # not an assert: the report must not print the secret either
                raise AssertionError(f"a plaintext code (masked: ...{code[-4:]}) appears in "
                                     f"{where}")


# -- the shared server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    running = Server(base / "data", base, "main").start()
    try:
        yield running
    finally:
        exit_code = running.stop()
        assert exit_code == 0, running.logs()[-3000:]


KEY_SPECS = {  # client name -> (role, binding)
    "web": ("storefront", "web"),
    "web_again": ("storefront", "web"),
    "app": ("storefront", "app"),
    "partner": ("partner", ""),
    "partner2": ("partner", ""),
    "pos": ("pos", "T-01"),
    "pos2": ("pos", "T-02"),
    "supplier": ("supplier", "S-1"),
}


@pytest.fixture(scope="module")
def keys(server) -> dict[str, str]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = dict(zip(KEY_SPECS, pool.map(lambda spec: server.create_key(*spec)[0],
                                           KEY_SPECS.values())))
    made["admin"] = server.admin_key
    return made


@pytest.fixture(scope="module")
def c(server, keys):
    """A client per key, each on its own connection (so calls spread over both workers)."""
    return types.SimpleNamespace(**{name: server.client(key, fresh=True)
                                    for name, key in keys.items()})


# -- health ---------------------------------------------------------------------------------------

def test_health_answers_without_a_key_for_every_service(server):
    channel = server.channel(fresh=True)
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "kamicore.v1.Catalog", "kamicore.v1.Inventory", "kamicore.v1.Orders",
                    "kamicore.v1.Redemption"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


# -- catalog --------------------------------------------------------------------------------------

def test_create_sku_created_retry_and_already_exists(c):
    sku_id = uid("cat-create")
    first = c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=sku_message(sku_id)))
    assert first.status == catalog_pb2.CREATE_SKU_STATUS_CREATED
    assert first.sku.sku_id == sku_id and first.sku.created_ms > 0
    assert first.sku.prices[0].price_micros == PRICE_MICROS["web"]
    retry = c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=sku_message(sku_id)))
    assert retry.status == catalog_pb2.CREATE_SKU_STATUS_CREATED
    assert retry.sku == first.sku  # the first answer, not a second SKU
    other = c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(
        sku=sku_message(sku_id, name="another definition")))
    assert other.status == catalog_pb2.CREATE_SKU_STATUS_ALREADY_EXISTS
    stored = c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id))
    assert stored.sku == first.sku  # nothing changed


def test_get_and_update_sku_found_and_not_found(c):
    sku_id = uid("cat-update")
    created = create_sku(c.admin, sku_id)
    got = c.web.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id))  # storefronts read
    assert got.status == catalog_pb2.SKU_LOOKUP_STATUS_FOUND and got.sku == created
    missing = c.partner.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=uid("no-such-sku")))
    assert missing.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND
    assert not missing.HasField("sku")

    change = sku_message(sku_id, channels=("web",), limit=3, low_stock=7, name="renamed")
    change.face_value.amount_micros = 1  # fixed once created: ignored
    change.delivery_kind = catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP  # fixed too
    updated = c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(sku=change))
    assert updated.status == catalog_pb2.SKU_LOOKUP_STATUS_FOUND
    after = c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku
    assert after == updated.sku
    assert (after.name, after.purchase_limit_per_account, after.low_stock_threshold) == (
        "renamed", 3, 7)
    assert [price.channel for price in after.prices] == ["web"]
    assert after.face_value == created.face_value
    assert after.delivery_kind == catalog_pb2.DELIVERY_KIND_CODE
    assert after.created_ms == created.created_ms and after.updated_ms >= created.updated_ms

    ghost = uid("cat-ghost")
    not_found = c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(sku=sku_message(ghost)))
    assert not_found.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND
    assert c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=ghost)).status == \
        catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND  # an update never creates


def test_list_skus_pages_through_everything_in_id_order(c):
    prefix = uid("cat-list")
    mine = [f"{prefix}-{index}" for index in range(5)]
    for sku_id in mine:
        create_sku(c.admin, sku_id)
    seen, token, pages = [], "", 0
    while True:
        page = c.partner.catalog.ListSkus(catalog_pb2.ListSkusRequest(page_size=2,
                                                                      page_token=token))
        assert len(page.skus) <= 2
        seen += [sku.sku_id for sku in page.skus]
        pages += 1
        token = page.next_page_token
        if not token:
            break
        assert len(page.skus) == 2  # only the last page is short
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(mine) <= set(seen)
    assert pages >= 3
    everything = c.admin.catalog.ListSkus(catalog_pb2.ListSkusRequest(page_size=1000))
    assert [sku.sku_id for sku in everything.skus] == seen
    assert everything.next_page_token == ""
    default_page = c.admin.catalog.ListSkus(catalog_pb2.ListSkusRequest())  # 0 means 100
    assert [sku.sku_id for sku in default_page.skus] == seen[:100]


# -- inventory ------------------------------------------------------------------------------------

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
    stock = c.supplier.stock(sku_id)  # suppliers watch stock too
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
    stock = c.web.stock(sku_id)
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
    lookup = {code: c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
              for code in available}
    available = [code for code in available
                 if lookup[code].state == common_pb2.CODE_STATE_AVAILABLE]
    assert len(available) == 2
    ref_id = lambda code_id: inventory_pb2.CodeRef(code_id=code_id)  # noqa: E731
    ref_code = lambda code: inventory_pb2.CodeRef(code=code)  # noqa: E731

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


# -- orders: CreateOrder --------------------------------------------------------------------------

def test_create_order_reserves_masked_codes_at_the_channel_price(c):
    sku_id = uid("ord-create")
    codes = stocked_sku(c.admin, sku_id, 4)
    before_ms = int(time.time() * 1000)
    reply = c.web.orders.CreateOrder(order_request(uid("create"), sku_id, 3, account="amy"))
    assert reply.status == CREATED
    order = reply.order
    assert order.order_id and order.state == orders_pb2.ORDER_STATE_RESERVED
    assert order.channel == "web" and order.buyer.account_id == "amy"
    assert order.total == common_pb2.Money(currency=CURRENCY,
                                           amount_micros=3 * PRICE_MICROS["web"])
    assert [(line.sku_id, line.quantity) for line in order.lines] == [(sku_id, 3)]
    assert before_ms + 890_000 <= order.hold_until_ms <= before_ms + 960_000  # 0 means 900 s
    assert len(order.codes) == 3 and len({code.code_id for code in order.codes}) == 3
    assert all(code.code == "" and code.masked_code.startswith("*") for code in order.codes)
    assert all(code.state == common_pb2.CODE_STATE_RESERVED for code in order.codes)
    assert_no_plaintext(reply.SerializeToString(), codes, "the CreateOrder reply")
    stock = c.admin.stock(sku_id)
    assert counts(stock)["RESERVED"] == 3 and stock.sellable == 1
    partner = c.partner.orders.CreateOrder(order_request(uid("create"), sku_id, 1))
    assert partner.status == CREATED
    assert partner.order.channel == "partner"
    assert partner.order.total.amount_micros == PRICE_MICROS["partner"]


def test_create_order_each_refusal_reserves_nothing(c):
    sku_id = uid("ord-refuse")
    stocked_sku(c.admin, sku_id, 5, limit=2)
    topup = uid("ord-topup")
    create_sku(c.admin, topup, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    partner_only = uid("ord-partner-only")
    stocked_sku(c.admin, partner_only, 2, channels=("partner",))
    key = uid("refuse")
    first = c.web.orders.CreateOrder(order_request(key, sku_id, 2, account="bob"))
    assert first.status == CREATED
    before = {sku: c.admin.stock(sku) for sku in (sku_id, partner_only)}
    table = [
        (order_request(key, sku_id, 1, account="bob"), O.CREATE_ORDER_STATUS_IDEMPOTENCY_CONFLICT),
        (order_request(uid("r"), uid("no-such-sku")), O.CREATE_ORDER_STATUS_SKU_NOT_FOUND),
        (order_request(uid("r"), topup), O.CREATE_ORDER_STATUS_DELIVERY_NOT_SUPPORTED),
        (order_request(uid("r"), partner_only), O.CREATE_ORDER_STATUS_NOT_SOLD_ON_CHANNEL),
        (order_request(uid("r"), sku_id, 1, account="bob"), O.CREATE_ORDER_STATUS_LIMIT_EXCEEDED),
        (order_request(uid("r"), sku_id, 3, account="carol"),
         O.CREATE_ORDER_STATUS_LIMIT_EXCEEDED),
        # every line or none: the first line would be fine, the second is refused
        (order_request(uid("r"), sku_id, account="dave", lines=[
            O.OrderLine(sku_id=sku_id, quantity=1),
            O.OrderLine(sku_id=partner_only, quantity=1)]),
         O.CREATE_ORDER_STATUS_NOT_SOLD_ON_CHANNEL),
    ]
    for request, expected in table:
        reply = c.web.orders.CreateOrder(request)
        assert reply.status == expected, (request, reply)
        assert not reply.HasField("order")
        assert {sku: c.admin.stock(sku) for sku in before} == before
    # partner_only holds 2 codes: an order of 3 is short, and so are two lines of 1 and 2;
    # a first line that could be filled is not reserved either
    short = c.partner.orders.CreateOrder(order_request(uid("r"), partner_only, 3))
    assert short.status == O.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK
    for lines in ([O.OrderLine(sku_id=partner_only, quantity=1),
                   O.OrderLine(sku_id=partner_only, quantity=2)],
                  [O.OrderLine(sku_id=sku_id, quantity=1),
                   O.OrderLine(sku_id=partner_only, quantity=3)]):
        reply = c.partner.orders.CreateOrder(order_request(uid("r"), "", lines=lines))
        assert reply.status == O.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK
        assert not reply.HasField("order")
    assert {sku: c.admin.stock(sku) for sku in before} == before
    # the limit counts open orders: cancelling gives the units back
    cancel = c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(order_id=first.order.order_id))
    assert cancel.status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    again = c.web.orders.CreateOrder(order_request(uid("r"), sku_id, 2, account="bob"))
    assert again.status == CREATED


# -- orders: payment, cancel, lookups -------------------------------------------------------------

def test_confirm_payment_paid_retry_already_paid_and_amount_mismatch(c):
    sku_id = uid("ord-pay")
    codes = stocked_sku(c.admin, sku_id, 4)
    created = c.web.orders.CreateOrder(order_request(uid("pay"), sku_id, 2)).order
    wrong_amount = c.web.orders.ConfirmPayment(pay_request(created, "ref-1",
                                                           created.total.amount_micros - 1))
    assert wrong_amount.status == orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH
    wrong_currency = pay_request(created, "ref-1")
    wrong_currency.amount.currency = "USD"
    assert c.web.orders.ConfirmPayment(wrong_currency).status == \
        orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH
    assert c.web.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=created.order_id)).order \
        .state == orders_pb2.ORDER_STATE_RESERVED  # nothing changed
    assert counts(c.admin.stock(sku_id))["SOLD"] == 0

    paid = c.web.orders.ConfirmPayment(pay_request(created, "ref-1"))
    assert paid.status == PAID and not paid.late
    assert paid.order.state == orders_pb2.ORDER_STATE_PAID
    assert paid.order.payment_reference == "ref-1"
    delivered = plaintexts(paid.order)
    assert len(delivered) == 2 and set(delivered) <= set(codes)
    assert all(code.state == common_pb2.CODE_STATE_SOLD for code in paid.order.codes)
    assert [code.code_id for code in paid.order.codes] == [code.code_id
                                                           for code in created.codes]
    retry = c.web_again.orders.ConfirmPayment(pay_request(created, "ref-1"))  # same channel
    assert retry.status == PAID and plaintexts(retry.order) == delivered
    other = c.web.orders.ConfirmPayment(pay_request(created, "ref-2"))
    assert other.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ALREADY_PAID
    assert_no_plaintext(other.SerializeToString(), codes, "an ALREADY_PAID reply")
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["AVAILABLE"], stock["RESERVED"]) == (2, 2, 0)
    unknown = c.web.orders.ConfirmPayment(orders_pb2.ConfirmPaymentRequest(
        order_id=f"storefront:web/{uid('nope')}", payment_reference="ref-x",
        amount=created.total))
    assert unknown.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND


def test_cancel_order_statuses(c):
    sku_id = uid("ord-cancel")
    stocked_sku(c.admin, sku_id, 3)
    open_order = c.web.orders.CreateOrder(order_request(uid("cancel"), sku_id, 2)).order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    request = orders_pb2.CancelOrderRequest(order_id=open_order.order_id)
    assert c.web.orders.CancelOrder(request).status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    stock = c.admin.stock(sku_id)
    assert counts(stock)["RESERVED"] == 0 and stock.sellable == 3
    assert c.web.orders.CancelOrder(request).status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    looked_up = c.web.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=open_order.order_id))
    assert looked_up.order.state == orders_pb2.ORDER_STATE_CANCELLED
    paid = buy(c.web, sku_id, 1)
    assert c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=paid.order.order_id)).status == orders_pb2.CANCEL_ORDER_STATUS_ALREADY_PAID
    assert counts(c.admin.stock(sku_id))["SOLD"] == 1
    assert c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=f"storefront:web/{uid('nope')}")).status == \
        orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND


def test_get_order_is_masked_everywhere_for_owner_and_admin(c):
    sku_id = uid("ord-get")
    codes = stocked_sku(c.admin, sku_id, 3)
    paid = buy(c.web, sku_id, 2)
    for client in (c.web, c.web_again, c.admin):
        reply = client.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=paid.order.order_id))
        assert reply.status == FOUND
        assert reply.order.state == orders_pb2.ORDER_STATE_PAID
        assert [code.code_id for code in reply.order.codes] == \
            [code.code_id for code in paid.order.codes]
        for code, delivered in zip(reply.order.codes, paid.order.codes):
            assert code.code == ""
            assert code.masked_code == delivered.masked_code
            assert code.masked_code.endswith(delivered.code[-4:])
            assert code.masked_code.count("*") >= len(delivered.code) - 4
        assert_no_plaintext(reply.SerializeToString(), codes, "a GetOrder reply")
        assert_no_plaintext(str(reply), codes, "a GetOrder reply")
    missing = c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=f"storefront:web/{uid('nope')}"))
    assert missing.status == NOT_FOUND and not missing.HasField("order")


def test_get_delivery_owner_only_after_payment_and_every_reveal_is_audited(server, c):
    sku_id = uid("ord-delivery")
    stocked_sku(c.admin, sku_id, 3)
    created = c.web.orders.CreateOrder(order_request(uid("deliver"), sku_id, 2)).order
    request = orders_pb2.GetDeliveryRequest(order_id=created.order_id)
    unpaid = c.web.orders.GetDelivery(request)
    assert unpaid.status == orders_pb2.ORDER_LOOKUP_STATUS_NOT_PAID
    assert not unpaid.HasField("order")
    paid = c.web.orders.ConfirmPayment(pay_request(created))
    assert paid.status == PAID
    events = [server.audit_events()]
    for client in (c.web, c.web_again):  # any key of the owning channel
        delivery = client.orders.GetDelivery(request)
        assert delivery.status == FOUND
        assert plaintexts(delivery.order) == plaintexts(paid.order)
        assert all(delivery.order.codes[i].code for i in range(2))
        events.append(server.audit_events())
    # one reveal event per code shown (the sweeper may add others meanwhile)
    assert events[1] >= events[0] + 2 and events[2] >= events[1] + 2
    for stranger in (c.app, c.partner):
        other = stranger.orders.GetDelivery(request)
        assert other.status == NOT_FOUND and not other.HasField("order")


def test_report_invalid_code_reissues_a_working_replacement(c):
    sku_id = uid("ord-invalid")
    codes = stocked_sku(c.admin, sku_id, 3)
    paid = buy(c.web, sku_id, 1)
    bad = paid.order.codes[0]
    request = orders_pb2.ReportInvalidCodeRequest(order_id=paid.order.order_id,
                                                  code_id=bad.code_id, reason="customer: used")
    reply = c.web.orders.ReportInvalidCode(request)
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    replacement = reply.replacement
    assert replacement.code in codes and replacement.code != bad.code
    assert replacement.code_id != bad.code_id
    assert replacement.state == common_pb2.CODE_STATE_SOLD
    retry = c.web.orders.ReportInvalidCode(request)
    assert retry.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    assert retry.replacement.code_id == replacement.code_id
    stock = counts(c.admin.stock(sku_id))
    assert (stock["INVALID"], stock["SOLD"], stock["AVAILABLE"]) == (1, 1, 1)
    delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=paid.order.order_id))
    states = {code.code_id: code.state for code in delivery.order.codes}
    assert states == {bad.code_id: common_pb2.CODE_STATE_INVALID,
                      replacement.code_id: common_pb2.CODE_STATE_SOLD}
    redeemed = c.pos.redemption.Redeem(R.RedeemRequest(code=replacement.code,
                                                       request_id=uid("inv")))
    assert redeemed.status == R.REDEEM_STATUS_REDEEMED  # the replacement works
    refused = c.pos.redemption.Redeem(R.RedeemRequest(code=bad.code, request_id=uid("inv")))
    assert refused.status == R.REDEEM_STATUS_INVALID
    used = c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=replacement.code_id))
    assert used.status == orders_pb2.REPORT_INVALID_STATUS_NOT_SOLD
    elsewhere = buy(c.web, sku_id, 1)
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=elsewhere.order.codes[0].code_id)).status == \
        orders_pb2.REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=f"storefront:web/{uid('nope')}", code_id=bad.code_id)).status == \
        orders_pb2.REPORT_INVALID_STATUS_ORDER_NOT_FOUND


def test_report_invalid_code_without_stock_left_means_no_replacement(c):
    sku_id = uid("ord-noreplace")
    stocked_sku(c.admin, sku_id, 1)
    paid = buy(c.partner, sku_id, 1)
    reply = c.partner.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=paid.order.codes[0].code_id))
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_NO_REPLACEMENT
    assert not reply.HasField("replacement")
    assert counts(c.admin.stock(sku_id))["INVALID"] == 1


# -- redemption -----------------------------------------------------------------------------------

def test_redeem_each_status_over_the_wire(c):
    sku_id = uid("red-statuses")
    codes = stocked_sku(c.admin, sku_id, 8)
    paid = buy(c.web, sku_id, 6)
    sold = plaintexts(paid.order)
    ids = {code.code: code.code_id for code in paid.order.codes}
    c.admin.inventory.VoidCodes(inventory_pb2.CodeOpRequest(
        codes=[inventory_pb2.CodeRef(code_id=ids[sold[2]])]))
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=ids[sold[3]])).status == \
        orders_pb2.REPORT_INVALID_STATUS_REISSUED
    c.admin.inventory.FreezeCodes(inventory_pb2.CodeOpRequest(
        codes=[inventory_pb2.CodeRef(code_id=ids[sold[4]])]))
    in_stock = [code for code in codes if c.admin.redemption.VerifyCode(R.VerifyCodeRequest(
        code=code)).state == common_pb2.CODE_STATE_AVAILABLE]
    assert len(in_stock) == 1  # the other one replaced the invalid code
    rq = uid("rq")
    before_ms = int(time.time() * 1000)

    first = c.pos.redemption.Redeem(R.RedeemRequest(code=sold[0].lower().replace("-", " "),
                                                    request_id=f"{rq}-1"))
    assert first.status == R.REDEEM_STATUS_REDEEMED
    assert first.code_id == ids[sold[0]] and first.request_id == f"{rq}-1"
    assert first.redeemed_by_terminal == "T-01"
    assert before_ms - 5000 <= first.redeemed_at_ms <= int(time.time() * 1000) + 5000
    table = [
        (c.pos, "", "rq-2", R.REDEEM_STATUS_MALFORMED),
        (c.pos, "bad\x01code", "rq-3", R.REDEEM_STATUS_MALFORMED),
        (c.pos, "X" * 129, "rq-4", R.REDEEM_STATUS_MALFORMED),
        (c.pos, sold[1], "rq-1", R.REDEEM_STATUS_REQUEST_ID_CONFLICT),
        (c.pos, uid("NEVER-IMPORTED"), "rq-5", R.REDEEM_STATUS_NOT_FOUND),
        (c.pos, sold[2], "rq-6", R.REDEEM_STATUS_VOID),
        (c.pos, sold[3], "rq-7", R.REDEEM_STATUS_INVALID),
        (c.pos, sold[4], "rq-8", R.REDEEM_STATUS_FROZEN),
        (c.pos2, sold[0], "rq-9", R.REDEEM_STATUS_ALREADY_REDEEMED),
        (c.pos, in_stock[0], "rq-10", R.REDEEM_STATUS_NOT_SOLD),
    ]
    for client, code, request_id, expected in table:
        request_id = f"{rq}-{request_id.removeprefix('rq-')}"
        reply = client.redemption.Redeem(R.RedeemRequest(code=code, request_id=request_id))
        assert reply.status == expected, (request_id, reply)
        assert reply.request_id == request_id
    already = c.pos2.redemption.Redeem(R.RedeemRequest(code=sold[0], request_id=f"{rq}-11"))
    assert already.status == R.REDEEM_STATUS_ALREADY_REDEEMED
    assert (already.redeemed_at_ms, already.redeemed_by_terminal) == (first.redeemed_at_ms,
                                                                      "T-01")
    assert already.code_id == first.code_id
    # the request id belongs to the terminal: T-02 may use rq-1 for its own code
    own = c.pos2.redemption.Redeem(R.RedeemRequest(code=sold[1], request_id=f"{rq}-1"))
    assert own.status == R.REDEEM_STATUS_REDEEMED and own.redeemed_by_terminal == "T-02"
    stock = counts(c.admin.stock(sku_id))
    assert (stock["REDEEMED"], stock["VOID"], stock["FROZEN"], stock["INVALID"]) == (2, 1, 1, 1)


def test_redeem_retry_with_the_same_request_id_gets_the_first_answer(server, c, keys):
    sku_id = uid("red-retry")
    stocked_sku(c.admin, sku_id, 1)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    request = R.RedeemRequest(code=code, request_id=uid("till"))
    first = c.pos.redemption.Redeem(request)
    assert first.status == R.REDEEM_STATUS_REDEEMED
    for _ in range(4):  # retried over new connections, whichever worker answers
        retry = server.client(keys["pos"], fresh=True).redemption.Redeem(request)
        assert retry == first
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 1


def test_redeem_after_valid_until_is_expired(c):
    sku_id = uid("red-expired")
    create_sku(c.admin, sku_id)
    valid_until_ms = int(time.time() * 1000) + 2500
    import_codes(c.admin, sku_id, new_codes(1), valid_until_ms=valid_until_ms)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    time.sleep(max(0.0, (valid_until_ms - time.time() * 1000) / 1000) + 0.3)
    reply = c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("exp")))
    assert reply.status == R.REDEEM_STATUS_EXPIRED
    assert counts(c.admin.stock(sku_id))["SOLD"] == 1


def test_redeem_batch_one_result_per_item_in_order(c):
    sku_id = uid("red-batch")
    stocked_sku(c.admin, sku_id, 4)
    sold = plaintexts(buy(c.web, sku_id, 3).order)
    b = uid("b")
    items = [(sold[0], f"{b}-1"), (uid("NOPE"), f"{b}-2"), ("", f"{b}-3"), (sold[1], f"{b}-4"),
             (sold[0], f"{b}-5"), (sold[2], f"{b}-4")]
    reply = c.pos.redemption.RedeemBatch(R.RedeemBatchRequest(items=[
        R.RedeemRequest(code=code, request_id=request_id) for code, request_id in items]))
    assert [(result.status, result.request_id) for result in reply.results] == [
        (R.REDEEM_STATUS_REDEEMED, f"{b}-1"), (R.REDEEM_STATUS_NOT_FOUND, f"{b}-2"),
        (R.REDEEM_STATUS_MALFORMED, f"{b}-3"), (R.REDEEM_STATUS_REDEEMED, f"{b}-4"),
        (R.REDEEM_STATUS_ALREADY_REDEEMED, f"{b}-5"),
        (R.REDEEM_STATUS_REQUEST_ID_CONFLICT, f"{b}-4")]
    assert all(result.redeemed_by_terminal == "T-01" for result in reply.results
               if result.status == R.REDEEM_STATUS_REDEEMED)
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 2


def test_redeem_stream_answers_in_order_with_request_ids(c):
    sku_id = uid("red-stream")
    stocked_sku(c.admin, sku_id, 310)
    sold = plaintexts(buy(c.web, sku_id, 300).order)  # more than the server reads ahead
    prefix = uid("s")
    requests = [R.RedeemRequest(code=code, request_id=f"{prefix}-{index}")
                for index, code in enumerate(sold)]
    requests += [R.RedeemRequest(code=sold[0], request_id=f"{prefix}-dup"),
                 R.RedeemRequest(code=uid("NOPE"), request_id=f"{prefix}-missing"),
                 R.RedeemRequest(code=sold[1], request_id=f"{prefix}-1")]  # a retry
    replies = list(c.pos.redemption.RedeemStream(iter(requests)))
    assert [reply.request_id for reply in replies] == [request.request_id
                                                       for request in requests]
    assert [reply.status for reply in replies] == [R.REDEEM_STATUS_REDEEMED] * 300 + [
        R.REDEEM_STATUS_ALREADY_REDEEMED, R.REDEEM_STATUS_NOT_FOUND, R.REDEEM_STATUS_REDEEMED]
    assert replies[-1] == replies[1]
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 300


def test_verify_code_shows_state_without_redeeming_or_revealing(c):
    sku_id = uid("red-verify")
    codes = stocked_sku(c.admin, sku_id, 2)
    paid = buy(c.web, sku_id, 1)
    code = paid.order.codes[0]
    for client in (c.pos, c.admin):
        reply = client.redemption.VerifyCode(R.VerifyCodeRequest(code=code.code.lower()))
        assert reply.status == R.VERIFY_STATUS_FOUND
        assert (reply.state, reply.sku_id, reply.code_id) == (common_pb2.CODE_STATE_SOLD,
                                                              sku_id, code.code_id)
        assert reply.masked_code == code.masked_code and reply.redeemed_at_ms == 0
        assert_no_plaintext(reply.SerializeToString(), codes, "a VerifyCode reply")
    redeemed = c.pos2.redemption.Redeem(R.RedeemRequest(code=code.code, request_id=uid("v")))
    after = c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code.code))
    assert after.state == common_pb2.CODE_STATE_REDEEMED
    assert (after.redeemed_at_ms, after.redeemed_by_terminal) == (redeemed.redeemed_at_ms,
                                                                  "T-02")
    assert c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code="")).status == \
        R.VERIFY_STATUS_MALFORMED
    assert c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code=uid("NOPE"))).status == \
        R.VERIFY_STATUS_NOT_FOUND
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 1  # verifying never redeemed


# -- the auth matrix ------------------------------------------------------------------------------

def _minimal_requests() -> dict[str, tuple[str, object, object]]:
    """A minimal valid request per method: (kind, request or messages, response class)."""
    unknown_order = orders_pb2.GetOrderRequest(order_id="storefront:web/auth-none")
    return {
        "/kamicore.v1.Catalog/CreateSku": ("unary", catalog_pb2.CreateSkuRequest(
            sku=sku_message("auth-matrix-sku")), catalog_pb2.CreateSkuResponse),
        "/kamicore.v1.Catalog/UpdateSku": ("unary", catalog_pb2.UpdateSkuRequest(
            sku=sku_message("auth-matrix-none")), catalog_pb2.UpdateSkuResponse),
        "/kamicore.v1.Catalog/GetSku": ("unary", catalog_pb2.GetSkuRequest(
            sku_id="auth-matrix-none"), catalog_pb2.GetSkuResponse),
        "/kamicore.v1.Catalog/ListSkus": ("unary", catalog_pb2.ListSkusRequest(page_size=1),
                                          catalog_pb2.ListSkusResponse),
        "/kamicore.v1.Inventory/ImportCodes": ("stream_unary", [
            inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(
                sku_id="auth-matrix-none", batch_id="auth", supplier_id="S-1"))],
            inventory_pb2.ImportCodesResponse),
        "/kamicore.v1.Inventory/GetStock": ("unary", inventory_pb2.GetStockRequest(
            sku_id="auth-matrix-none"), inventory_pb2.GetStockResponse),
        "/kamicore.v1.Inventory/FreezeCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/UnfreezeCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/VoidCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/RotateKeys": ("unary", inventory_pb2.RotateKeysRequest(),
                                              inventory_pb2.RotateKeysResponse),
        "/kamicore.v1.Orders/CreateOrder": ("unary", order_request(
            "auth-matrix", "auth-matrix-none"), orders_pb2.CreateOrderResponse),
        "/kamicore.v1.Orders/ConfirmPayment": ("unary", orders_pb2.ConfirmPaymentRequest(
            order_id=unknown_order.order_id, payment_reference="auth",
            amount=common_pb2.Money(currency=CURRENCY, amount_micros=1)),
            orders_pb2.ConfirmPaymentResponse),
        "/kamicore.v1.Orders/CancelOrder": ("unary", orders_pb2.CancelOrderRequest(
            order_id=unknown_order.order_id), orders_pb2.CancelOrderResponse),
        "/kamicore.v1.Orders/GetOrder": ("unary", unknown_order, orders_pb2.GetOrderResponse),
        "/kamicore.v1.Orders/GetDelivery": ("unary", orders_pb2.GetDeliveryRequest(
            order_id=unknown_order.order_id), orders_pb2.GetDeliveryResponse),
        "/kamicore.v1.Orders/ReportInvalidCode": ("unary", orders_pb2.ReportInvalidCodeRequest(
            order_id=unknown_order.order_id, code_id=1), orders_pb2.ReportInvalidCodeResponse),
        "/kamicore.v1.Redemption/Redeem": ("unary", R.RedeemRequest(
            code="AUTH-MATRIX-NONE", request_id="auth"), R.RedeemResponse),
        "/kamicore.v1.Redemption/RedeemBatch": ("unary", R.RedeemBatchRequest(items=[
            R.RedeemRequest(code="AUTH-MATRIX-NONE", request_id="auth")]),
            R.RedeemBatchResponse),
        "/kamicore.v1.Redemption/RedeemStream": ("stream_stream", [R.RedeemRequest(
            code="AUTH-MATRIX-NONE", request_id="auth")], R.RedeemResponse),
        "/kamicore.v1.Redemption/VerifyCode": ("unary", R.VerifyCodeRequest(
            code="AUTH-MATRIX-NONE"), R.VerifyCodeResponse),
    }


MINIMAL_REQUESTS = _minimal_requests()
ROLE_CLIENTS = {"admin": "admin", "storefront": "web", "partner": "partner", "pos": "pos",
                "supplier": "supplier"}


def call_method(channel: grpc.Channel, method: str, metadata) -> grpc.StatusCode:
    """Call `method` with its minimal request; OK or the gRPC status code it failed with."""
    kind, request, response_class = MINIMAL_REQUESTS[method]
    options = {"request_serializer": lambda message: message.SerializeToString(),
               "response_deserializer": response_class.FromString}
    try:
        if kind == "unary":
            channel.unary_unary(method, **options)(request, metadata=metadata, timeout=30)
        elif kind == "stream_unary":
            channel.stream_unary(method, **options)(iter(request), metadata=metadata,
                                                    timeout=30)
        else:
            list(channel.stream_stream(method, **options)(iter(request), metadata=metadata,
                                                          timeout=30))
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_every_rpc_of_every_service_has_roles():
    served = {f"/kamicore.v1.{service.name}/{method.name}"
              for module in (catalog_pb2, inventory_pb2, orders_pb2, redemption_pb2)
              for service in module.DESCRIPTOR.services_by_name.values()
              for method in service.methods}
    assert served == set(auth.METHOD_ROLES) == set(MINIMAL_REQUESTS)


@pytest.fixture(scope="module")
def revoked_keys(server) -> dict[str, str]:
    """A key per role, created and then revoked with the CLI."""
    specs = {"admin": ("admin", ""), "storefront": ("storefront", "web"),
             "partner": ("partner", ""), "pos": ("pos", "T-01"),
             "supplier": ("supplier", "S-1")}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = dict(zip(specs, pool.map(lambda spec: server.create_key(*spec), specs.values())))
        list(pool.map(server.revoke_key, [key_id for _, key_id in made.values()]))
    return {role: key for role, (key, _) in made.items()}


@pytest.fixture(scope="module")
def matrix_channel(server):
    return server.channel()


@pytest.mark.parametrize("caller", [*ROLE_CLIENTS, "no key", "malformed key", "revoked key"])
@pytest.mark.parametrize("method", sorted(auth.METHOD_ROLES))
def test_auth_matrix(method, caller, keys, revoked_keys, matrix_channel):
    if caller in ROLE_CLIENTS:
        code = call_method(matrix_channel, method,
                           [("authorization", f"Bearer {keys[ROLE_CLIENTS[caller]]}")])
        if caller in auth.METHOD_ROLES[method]:  # the minimal request is valid: answered
            assert code == grpc.StatusCode.OK, code
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED
        return
    if caller == "no key":
        attempts = [[], [("authorization", "")], [("authorization", "Bearer ")]]
    elif caller == "malformed key":
        real = keys["admin"]
        attempts = [[("authorization", "Bearer kc_not-a-key")],
                    [("authorization", f"Bearer {real[:-3]}xyz")],  # right id, wrong secret
                    [("authorization", real)],  # no scheme
                    [("authorization", f"Basic {real}")],
                    [("authorization", "Bearer " + "kc_" + "0" * 16 + "_secret")]]
    else:
        attempts = [[("authorization", f"Bearer {key}")] for key in revoked_keys.values()]
    for metadata in attempts:
        assert call_method(matrix_channel, method, metadata) == \
            grpc.StatusCode.UNAUTHENTICATED, metadata


# -- identity comes from the key ------------------------------------------------------------------

def _with_unknown_field(message, number: int, text: str) -> bytes:
    """`message` serialised plus a string field the schema does not have (a client claiming
    something about itself that the request has no place for)."""
    data = text.encode()
    return message.SerializeToString() + bytes([(number << 3) | 2, len(data)]) + data


def test_a_pos_key_redeems_as_its_own_terminal_whatever_the_request_says(server, c, keys):
    sku_id = uid("id-terminal")
    stocked_sku(c.admin, sku_id, 2)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    redeem = server.channel().unary_unary("/kamicore.v1.Redemption/Redeem",
                                          request_serializer=None,
                                          response_deserializer=R.RedeemResponse.FromString)
    forged = _with_unknown_field(R.RedeemRequest(code=code, request_id=uid("forged")), 6,
                                 "T-99")
    reply = redeem(forged, metadata=[("authorization", f"Bearer {keys['pos']}"),
                                     ("x-terminal", "T-99"), ("terminal", "T-99")], timeout=30)
    assert reply.status == R.REDEEM_STATUS_REDEEMED
    assert reply.redeemed_by_terminal == "T-01"
    verified = c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
    assert verified.redeemed_by_terminal == "T-01"


def test_a_supplier_key_imports_only_as_its_own_supplier(c):
    sku_id = uid("id-supplier")
    create_sku(c.admin, sku_id)
    own = import_codes(c.supplier, sku_id, new_codes(2), batch_id="s1-batch", supplier_id="S-1")
    assert own.imported == 2
    before = c.admin.stock(sku_id)
    assert [batch.supplier_id for batch in before.batches] == ["S-1"]
    error = rpc_error(import_codes, c.supplier, sku_id, new_codes(2), batch_id="s2-batch",
                      supplier_id="S-2", expect_ok=False)
    assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    assert "supplier_id" in error.details()
    blank = rpc_error(import_codes, c.supplier, sku_id, new_codes(2), batch_id="s3-batch",
                      supplier_id="", expect_ok=False)
    assert blank.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
    assert c.admin.stock(sku_id) == before


def test_a_storefront_cannot_see_or_touch_another_channels_orders(c):
    sku_id = uid("id-channel")
    stocked_sku(c.admin, sku_id, 4, channels=("web", "app", "partner"))
    web_paid = buy(c.web, sku_id, 1)
    web_open = c.web.orders.CreateOrder(order_request(uid("open"), sku_id, 1)).order
    for stranger in (c.app, c.partner):
        for order in (web_paid.order, web_open):
            assert stranger.orders.GetOrder(orders_pb2.GetOrderRequest(
                order_id=order.order_id)).status == NOT_FOUND
            assert stranger.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
                order_id=order.order_id)).status == NOT_FOUND
            assert stranger.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
                order_id=order.order_id, code_id=order.codes[0].code_id)).status == \
                orders_pb2.REPORT_INVALID_STATUS_ORDER_NOT_FOUND
        confirm = stranger.orders.ConfirmPayment(pay_request(web_open, "stolen"))
        assert confirm.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND
        assert not confirm.HasField("order")
        assert stranger.orders.CancelOrder(orders_pb2.CancelOrderRequest(
            order_id=web_open.order_id)).status == orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND
    # the same idempotency key on another channel is another order
    same_key = web_open.order_id.split("/", 1)[1]
    app_order = c.app.orders.CreateOrder(order_request(same_key, sku_id, 1))
    assert app_order.status == CREATED and app_order.order.order_id != web_open.order_id
    assert app_order.order.total.amount_micros == PRICE_MICROS["app"]
    # partners are each their own namespace
    partner_order = buy(c.partner, sku_id, 1).order
    assert partner_order.channel == "partner"
    for stranger in (c.partner2, c.web):
        assert stranger.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=partner_order.order_id)).status == NOT_FOUND
    stock = counts(c.admin.stock(sku_id))
    assert (stock["RESERVED"], stock["SOLD"], stock["AVAILABLE"]) == (2, 2, 0)


def test_a_channel_named_like_a_prefix_of_another_cannot_read_its_orders(server, c):
    """Order ids are '<owner>/<idempotency key>': an owner containing '/' could name another
    owner's orders, so such bindings are refused, and 'web' cannot reach 'webshop' orders."""
    refused = cli(server.data_dir, "keys", "create", "--role", "storefront", "--channel",
                  "web/eu", check=False)
    assert refused.returncode == 2 and "channel: must not contain '/'" in refused.stderr
    sku_id = uid("id-prefix")
    stocked_sku(c.admin, sku_id, 2, channels=("web",))
    sku = c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku
    sku.prices.add(channel="webshop", price_micros=1_000_000)
    c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(sku=sku))
    shop = server.client(server.create_key("storefront", "webshop")[0])
    shop_paid = buy(shop, sku_id, 1, key="k1")
    assert shop_paid.order.order_id == "storefront:webshop/k1"
    for order_id in (shop_paid.order.order_id, "storefront:web/../webshop/k1"):
        peek = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(order_id=order_id))
        assert peek.status == NOT_FOUND and not peek.HasField("order")
    collide = c.web.orders.CreateOrder(order_request("shop/k1", sku_id, 1))
    assert collide.order.order_id != shop_paid.order.order_id


# -- idempotent retries ---------------------------------------------------------------------------

def test_create_order_retry_returns_the_same_order_and_conflicts_on_changes(server, c, keys):
    sku_id = uid("idem-create")
    stocked_sku(c.admin, sku_id, 6)
    request = order_request(uid("idem"), sku_id, 2, account="erin")
    first = c.web.orders.CreateOrder(request)
    assert first.status == CREATED
    for _ in range(3):
        retry = server.client(keys["web"], fresh=True).orders.CreateOrder(request)
        assert retry.status == CREATED and retry.order == first.order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    other_lines = order_request(request.idempotency_key, sku_id, 3, account="erin")
    other_buyer = order_request(request.idempotency_key, sku_id, 2, account="frank")
    other_hold = order_request(request.idempotency_key, sku_id, 2, account="erin",
                               hold_seconds=60)
    for changed in (other_lines, other_buyer, other_hold):
        reply = c.web.orders.CreateOrder(changed)
        assert reply.status == orders_pb2.CREATE_ORDER_STATUS_IDEMPOTENCY_CONFLICT
        assert not reply.HasField("order")
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    paid = c.web.orders.ConfirmPayment(pay_request(first.order))
    again = c.web.orders.CreateOrder(request)  # after payment: still the same order
    assert again.status == CREATED and again.order.order_id == first.order.order_id
    assert [code.code_id for code in again.order.codes] == [code.code_id
                                                            for code in paid.order.codes]


def test_concurrent_retries_of_create_and_confirm_happen_once(server, keys, c):
    sku_id = uid("idem-race")
    stocked_sku(c.admin, sku_id, 10)
    request = order_request(uid("race"), sku_id, 3)
    metadata = [("authorization", f"Bearer {keys['web']}")]

    async def race():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(4)]
        try:
            stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]
            created = await asyncio.gather(*(stubs[index % 4].CreateOrder(
                request, metadata=metadata, timeout=60) for index in range(12)))
            order = created[0].order
            paid = await asyncio.gather(*(stubs[index % 4].ConfirmPayment(
                pay_request(order, "race-ref"), metadata=metadata, timeout=60)
                for index in range(12)))
            return created, paid
        finally:
            for channel in channels:
                await channel.close()

    created, paid = asyncio.run(race())
    assert {reply.status for reply in created} == {CREATED}
    assert len({tuple(code.code_id for code in reply.order.codes) for reply in created}) == 1
    assert {reply.status for reply in paid} == {PAID}
    assert len({tuple(plaintexts(reply.order)) for reply in paid}) == 1
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["RESERVED"], stock["AVAILABLE"]) == (3, 0, 7)


def test_racing_buyers_and_terminals_across_both_workers(server, keys, c):
    """One account racing itself past its purchase limit, and two terminals racing for one
    code, over connections spread on both workers."""
    limited = uid("race-limit")
    stocked_sku(c.admin, limited, 20, limit=3)
    contested = uid("race-code")
    stocked_sku(c.admin, contested, 1)
    code = buy(c.web, contested, 1).order.codes[0].code
    shop = [("authorization", f"Bearer {keys['web']}")]
    tills = [[("authorization", f"Bearer {keys['pos']}")],
             [("authorization", f"Bearer {keys['pos2']}")]]

    async def race():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(6)]
        try:
            orders = asyncio.gather(*(orders_pb2_grpc.OrdersStub(channels[i % 6]).CreateOrder(
                order_request(f"{limited}-{i}", limited, 1, account="greedy"), metadata=shop,
                timeout=60) for i in range(20)))
            redemptions = asyncio.gather(*(redemption_pb2_grpc.RedemptionStub(
                channels[i % 6]).Redeem(R.RedeemRequest(code=code, request_id=f"race-{i}"),
                                        metadata=tills[i % 2], timeout=60) for i in range(20)))
            return await orders, await redemptions
        finally:
            for channel in channels:
                await channel.close()

    orders, redemptions = asyncio.run(race())
    assert sorted(reply.status for reply in orders) == [CREATED] * 3 + [
        orders_pb2.CREATE_ORDER_STATUS_LIMIT_EXCEEDED] * 17
    assert counts(c.admin.stock(limited))["RESERVED"] == 3
    winners = [reply for reply in redemptions if reply.status == R.REDEEM_STATUS_REDEEMED]
    assert len(winners) == 1
    assert all(reply.status == R.REDEEM_STATUS_ALREADY_REDEEMED
               and reply.redeemed_by_terminal == winners[0].redeemed_by_terminal
               and reply.redeemed_at_ms == winners[0].redeemed_at_ms
               for reply in redemptions if reply is not winners[0])
    assert counts(c.admin.stock(contested))["REDEEMED"] == 1


# -- hold expiry and late payment -----------------------------------------------------------------

def _expired(client: Client, order_id: str) -> bool:
    return client.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id)).order.state \
        == orders_pb2.ORDER_STATE_EXPIRED


def test_an_expired_hold_goes_back_to_stock_and_a_late_payment_still_delivers(c):
    sku_id = uid("hold-late")
    codes = stocked_sku(c.admin, sku_id, 2, limit=2)
    created = c.web.orders.CreateOrder(order_request(uid("late"), sku_id, 2, account="gina",
                                                     hold_seconds=1)).order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    wait_until(lambda: counts(c.admin.stock(sku_id))["AVAILABLE"] == 2,
               hold_expiry_wait_seconds, "the sweeper to return the held codes")
    assert c.admin.stock(sku_id).sellable == 2
    assert _expired(c.web, created.order_id)
    # the units went back to the buyer's purchase limit too
    limit_check = c.web.orders.CreateOrder(order_request(uid("late-limit"), sku_id, 2,
                                                         account="gina", hold_seconds=1))
    assert limit_check.status == CREATED
    wait_until(lambda: counts(c.admin.stock(sku_id))["AVAILABLE"] == 2,
               hold_expiry_wait_seconds, "the second hold to lapse")
    paid = c.web.orders.ConfirmPayment(pay_request(created))
    assert paid.status == PAID and paid.late
    assert len(paid.order.codes) == 2 and set(plaintexts(paid.order)) == set(codes)
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["AVAILABLE"], stock["RESERVED"]) == (2, 0, 0)
    delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=created.order_id))
    assert delivery.status == FOUND and plaintexts(delivery.order) == plaintexts(paid.order)


def test_a_late_payment_after_someone_else_took_the_stock_is_refund_required(c):
    sku_id = uid("hold-refund")
    stocked_sku(c.admin, sku_id, 1)
    first = c.web.orders.CreateOrder(order_request(uid("slow"), sku_id, 1, account="hank",
                                                   hold_seconds=1)).order
    wait_until(lambda: _expired(c.web, first.order_id), hold_expiry_wait_seconds,
               "the hold to lapse")
    second = c.web.orders.CreateOrder(order_request(uid("fast"), sku_id, 1, account="ivy"))
    assert second.status == CREATED
    late = c.web.orders.ConfirmPayment(pay_request(first))
    assert late.status == orders_pb2.CONFIRM_PAYMENT_STATUS_REFUND_REQUIRED
    assert not late.HasField("order")
    assert c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=first.order_id)).status == orders_pb2.ORDER_LOOKUP_STATUS_NOT_PAID
    stock = counts(c.admin.stock(sku_id))
    assert (stock["RESERVED"], stock["SOLD"], stock["AVAILABLE"]) == (1, 0, 0)
    assert c.web.orders.ConfirmPayment(pay_request(second.order)).status == PAID


# -- 200 buyers, 50 codes -------------------------------------------------------------------------

def test_two_hundred_concurrent_buyers_for_fifty_codes_never_oversell(server, keys, c):
    sku_id = uid("rush")
    stocked_sku(c.admin, sku_id, 50)
    metadata = [("authorization", f"Bearer {keys['web']}")]
    buyers = 200

    async def rush():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(4)]
        stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]

        async def buyer(index: int):
            stub = stubs[index % len(stubs)]
            created = await stub.CreateOrder(order_request(
                f"{sku_id}-{index}", sku_id, 1, account=f"buyer-{index}"), metadata=metadata,
                timeout=120)
            if created.status != CREATED:
                return created.status, None, None
            paid = await stub.ConfirmPayment(pay_request(created.order), metadata=metadata,
                                             timeout=120)
            return created.status, paid.status, paid.order

        try:
            return await asyncio.gather(*(buyer(index) for index in range(buyers)))
        finally:
            for channel in channels:
                await channel.close()

    results = asyncio.run(rush())
    paid_orders = [order for _, paid, order in results if paid == PAID]
    assert len(paid_orders) == 50
    refused = [created for created, paid, _ in results if paid is None]
    assert refused == [orders_pb2.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK] * 150
    assert all(paid in (PAID, None) for _, paid, _ in results)  # none REFUND_REQUIRED
    code_ids = [code.code_id for order in paid_orders for code in order.codes]
    delivered = [code.code for order in paid_orders for code in order.codes]
    assert len(code_ids) == 50 and len(set(code_ids)) == 50
    assert len(set(delivered)) == 50 and all(delivered)
    stock = c.admin.stock(sku_id)
    assert (counts(stock)["SOLD"], counts(stock)["AVAILABLE"], counts(stock)["RESERVED"]) == (
        50, 0, 0)
    assert stock.sellable == 0
    for order in paid_orders:
        delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=order.order_id))
        assert delivery.status == FOUND and plaintexts(delivery.order) == plaintexts(order)


# -- bad input ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sentinel(c):
    """A SKU with stock in every common state, watched by the bad-input table."""
    sku_id = uid("bad-input")
    codes = stocked_sku(c.admin, sku_id, 6)
    paid = buy(c.web, sku_id, 2)
    held = c.web.orders.CreateOrder(order_request(uid("bad-hold"), sku_id, 1)).order
    dollars = sku_message(uid("bad-usd"))
    dollars.face_value.currency = "USD"
    assert c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(sku=dollars)).status == \
        catalog_pb2.CREATE_SKU_STATUS_CREATED
    import_codes(c.admin, dollars.sku_id, new_codes(1))
    return types.SimpleNamespace(sku_id=sku_id, codes=codes, paid=paid.order, held=held,
                                 usd_sku_id=dollars.sku_id)


def _bad_sku(base_id: str | None = None, **changes) -> catalog_pb2.Sku:
    sku = sku_message(base_id or uid("bad-sku"))
    for name, value in changes.items():
        if name == "currency":
            sku.face_value.currency = value
        elif name == "price":
            sku.prices[0].price_micros = value
        elif name == "duplicate_channel":
            sku.prices.add(channel="web", price_micros=1)
        else:
            setattr(sku, name, value)
    return sku


def _import(s, header_fields=None, chunks=(), header=True):
    fields = {"sku_id": s.sku_id, "batch_id": f"{s.sku_id}-batch",
              "unit_cost_micros": 40_000_000, **(header_fields or {})}
    messages = [inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(**fields))
                ] if header else []
    messages += [inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=chunk))
                 for chunk in chunks]
    return lambda c: c.admin.inventory.ImportCodes(iter(messages))


def _order(s, **changes):
    request = order_request(uid("bad"), s.sku_id, 1)
    for name, value in changes.items():
        if name == "account":
            request.buyer.account_id = value
        elif name == "quantity":
            request.lines[0].quantity = value
        elif name == "lines":
            del request.lines[:]
            request.lines.extend(value)
        else:
            setattr(request, name, value)
    return request


def _items(count, request_id="r"):
    return [R.RedeemRequest(code=f"BAD-{index}", request_id=f"{request_id}{index}")
            for index in range(count)]


def _ref(**field):
    return inventory_pb2.CodeRef(**field)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
MiB = 2**20
# (id, call(c, s) -> reply, expected): expected is (INVALID, "field named in the details"),
# (BIG, None), or a predicate on the reply for documented business statuses
BAD_INPUT = [
    ("CreateSku no sku_id", lambda c, s: c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(
        sku=_bad_sku(None, sku_id=""))), (INVALID, "sku.sku_id")),
    ("CreateSku bad currency", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(currency="yuan"))),
     (INVALID, "sku.face_value.currency")),
    ("CreateSku no delivery kind", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(delivery_kind=0))),
     (INVALID, "sku.delivery_kind")),
    ("CreateSku negative price", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(price=-1))),
     (INVALID, "sku.prices[0].price_micros")),
    ("CreateSku channel twice", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(duplicate_channel=True))),
     (INVALID, "sku.prices[2].channel")),
    ("CreateSku oversize message", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(name="N" * (5 * MiB)))), (BIG, None)),
    ("UpdateSku no name", lambda c, s: c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(
        sku=_bad_sku(s.sku_id, name=""))), (INVALID, "sku.name")),
    ("UpdateSku unknown", lambda c, s: c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(
        sku=sku_message(uid("bad-unknown")))),
     lambda reply: reply.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND),
    ("GetSku no sku_id", lambda c, s: c.web.catalog.GetSku(catalog_pb2.GetSkuRequest()),
     (INVALID, "sku_id")),
    ("GetSku unknown", lambda c, s: c.web.catalog.GetSku(catalog_pb2.GetSkuRequest(
        sku_id=uid("bad-unknown"))),
     lambda reply: reply.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND),
    ("ListSkus page_size 1001", lambda c, s: c.web.catalog.ListSkus(catalog_pb2.ListSkusRequest(
        page_size=1001)), (INVALID, "page_size")),
    ("GetStock no sku_id", lambda c, s: c.admin.inventory.GetStock(
        inventory_pb2.GetStockRequest()), (INVALID, "sku_id")),
    ("GetStock unknown", lambda c, s: c.admin.inventory.GetStock(inventory_pb2.GetStockRequest(
        sku_id=uid("bad-unknown"))),
     lambda reply: reply.status == inventory_pb2.STOCK_STATUS_NOT_FOUND),
    ("ImportCodes without header", lambda c, s: _import(s, chunks=[["BAD-NO-HEADER"]],
                                                        header=False)(c), (INVALID, "header")),
    ("ImportCodes empty stream", lambda c, s: _import(s, header=False)(c), (INVALID, "header")),
    ("ImportCodes header twice", lambda c, s: c.admin.inventory.ImportCodes(iter([
        inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(sku_id=s.sku_id,
                                                                           batch_id="b"))] * 2)),
     (INVALID, "chunk")),
    ("ImportCodes chunk of 10,001", lambda c, s: _import(s, chunks=[
        [f"BAD-{index}" for index in range(10_001)]])(c), (INVALID, "chunk.codes")),
    ("ImportCodes valid_until before valid_from", lambda c, s: _import(s, {
        "batch_id": "bad-window", "valid_from_ms": 2_000_000_000_000,
        "valid_until_ms": 1_900_000_000_000}, chunks=[["BAD-WINDOW"]])(c),
     (INVALID, "valid_until_ms")),
    ("ImportCodes negative cost", lambda c, s: _import(s, {
        "batch_id": "bad-cost", "unit_cost_micros": -1}, chunks=[["BAD-COST"]])(c),
     (INVALID, "unit_cost_micros")),
    ("ImportCodes no batch_id", lambda c, s: _import(s, {"batch_id": ""}, chunks=[
        ["BAD-NO-BATCH"]])(c), (INVALID, "batch_id")),
    ("ImportCodes bad second chunk", lambda c, s: _import(s, chunks=[
        ["BAD-FIRST-CHUNK-1", "BAD-FIRST-CHUNK-2"], [f"BAD-{i}" for i in range(10_001)]])(c),
        (INVALID, "chunk.codes")),
    ("ImportCodes oversize chunk", lambda c, s: _import(s, chunks=[
        ["B" * 100 + str(index) for index in range(50_000)]])(c), (BIG, None)),
    ("ImportCodes unknown SKU", lambda c, s: import_codes(c.admin, uid("bad-unknown"),
                                                          ["BAD-UNKNOWN-SKU"], expect_ok=False),
     lambda reply: reply.status == inventory_pb2.IMPORT_STATUS_SKU_NOT_FOUND),
    ("FreezeCodes none", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest()), (INVALID, "codes")),
    ("FreezeCodes 1,001", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id)] * 1001)),
     (INVALID, "codes")),
    ("FreezeCodes empty ref", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id), _ref()])),
     (INVALID, "codes[1]")),
    ("FreezeCodes code_id 0", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id),
                                           _ref(code_id=0)])), (INVALID, "codes[1]")),
    ("UnfreezeCodes none", lambda c, s: c.admin.inventory.UnfreezeCodes(
        inventory_pb2.CodeOpRequest()), (INVALID, "codes")),
    ("VoidCodes 1,001", lambda c, s: c.admin.inventory.VoidCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id)] * 1001)),
     (INVALID, "codes")),
    ("VoidCodes unknown and malformed", lambda c, s: c.admin.inventory.VoidCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=2**62), _ref(code="bad\x01")])),
     lambda reply: [result.status for result in reply.results] == [
         inventory_pb2.CODE_OP_STATUS_NOT_FOUND, inventory_pb2.CODE_OP_STATUS_MALFORMED]),
    ("CreateOrder no idempotency_key", lambda c, s: c.web.orders.CreateOrder(
        _order(s, idempotency_key="")), (INVALID, "idempotency_key")),
    ("CreateOrder idempotency_key 65 bytes", lambda c, s: c.web.orders.CreateOrder(
        _order(s, idempotency_key="k" * 65)), (INVALID, "idempotency_key")),
    ("CreateOrder no account", lambda c, s: c.web.orders.CreateOrder(_order(s, account="")),
     (INVALID, "buyer.account_id")),
    ("CreateOrder no lines", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[])),
     (INVALID, "lines")),
    ("CreateOrder quantity 0", lambda c, s: c.web.orders.CreateOrder(_order(s, quantity=0)),
     (INVALID, "lines[0].quantity")),
    ("CreateOrder quantity 1001", lambda c, s: c.web.orders.CreateOrder(
        _order(s, quantity=1001)), (INVALID, "lines[0].quantity")),
    ("CreateOrder line without sku", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1), orders_pb2.OrderLine(quantity=1)])),
     (INVALID, "lines[1].sku_id")),
    ("CreateOrder 101 lines", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1)] * 101)), (INVALID, "lines")),
    ("CreateOrder 11,000 codes", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1000)] * 11)), (INVALID, "lines")),
    ("CreateOrder hold_seconds 86401", lambda c, s: c.web.orders.CreateOrder(
        _order(s, hold_seconds=86_401)), (INVALID, "hold_seconds")),
    ("CreateOrder mixed currencies", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1),
        orders_pb2.OrderLine(sku_id=s.usd_sku_id, quantity=1)])), (INVALID, "lines")),
    ("CreateOrder unknown SKU", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1),
        orders_pb2.OrderLine(sku_id=uid("bad-unknown"), quantity=1)])),
     lambda reply: reply.status == orders_pb2.CREATE_ORDER_STATUS_SKU_NOT_FOUND),
    ("ConfirmPayment no reference", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(order_id=s.held.order_id, amount=s.held.total)),
     (INVALID, "payment_reference")),
    ("ConfirmPayment reference 129 bytes", lambda c, s: c.web.orders.ConfirmPayment(
        pay_request(s.held, "p" * 129)), (INVALID, "payment_reference")),
    ("ConfirmPayment no order_id", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(payment_reference="p", amount=s.held.total)),
     (INVALID, "order_id")),
    ("ConfirmPayment unknown order", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(order_id=f"storefront:web/{uid('bad')}",
                                         payment_reference="p", amount=s.held.total)),
     lambda reply: reply.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND),
    ("ConfirmPayment negative amount", lambda c, s: c.web.orders.ConfirmPayment(
        pay_request(s.held, "p-neg", -1)),
     lambda reply: reply.status == orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH),
    ("CancelOrder no order_id", lambda c, s: c.web.orders.CancelOrder(
        orders_pb2.CancelOrderRequest()), (INVALID, "order_id")),
    ("CancelOrder unknown", lambda c, s: c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=uid("bad"))),
     lambda reply: reply.status == orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND),
    ("GetOrder no order_id", lambda c, s: c.web.orders.GetOrder(orders_pb2.GetOrderRequest()),
     (INVALID, "order_id")),
    ("GetOrder unknown", lambda c, s: c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=uid("bad"))), lambda reply: reply.status == NOT_FOUND),
    ("GetDelivery no order_id", lambda c, s: c.web.orders.GetDelivery(
        orders_pb2.GetDeliveryRequest()), (INVALID, "order_id")),
    ("GetDelivery unknown", lambda c, s: c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=uid("bad"))), lambda reply: reply.status == NOT_FOUND),
    ("ReportInvalidCode code_id 0", lambda c, s: c.web.orders.ReportInvalidCode(
        orders_pb2.ReportInvalidCodeRequest(order_id=s.paid.order_id)), (INVALID, "code_id")),
    ("ReportInvalidCode unknown code", lambda c, s: c.web.orders.ReportInvalidCode(
        orders_pb2.ReportInvalidCodeRequest(order_id=s.paid.order_id, code_id=2**62)),
     lambda reply: reply.status == orders_pb2.REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER),
    ("Redeem no request_id", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=s.paid.codes[0].code)), (INVALID, "request_id")),
    ("Redeem request_id 65 bytes", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=s.paid.codes[0].code, request_id="r" * 65)), (INVALID, "request_id")),
    ("Redeem malformed codes", lambda c, s: [c.pos.redemption.Redeem(R.RedeemRequest(
        code=code, request_id=uid("bad"))) for code in ("", "bad\x01code", "X" * 129, " - ")],
     lambda replies: {reply.status for reply in replies} == {R.REDEEM_STATUS_MALFORMED}),
    ("Redeem unknown code", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=uid("BAD-UNKNOWN"), request_id=uid("bad"))),
     lambda reply: reply.status == R.REDEEM_STATUS_NOT_FOUND),
    ("RedeemBatch empty", lambda c, s: c.pos.redemption.RedeemBatch(R.RedeemBatchRequest()),
     (INVALID, "items")),
    ("RedeemBatch 1,001 items", lambda c, s: c.pos.redemption.RedeemBatch(R.RedeemBatchRequest(
        items=[R.RedeemRequest(code=s.paid.codes[0].code, request_id=uid("bad1001"))]
        + _items(1000))), (INVALID, "items")),
    ("RedeemBatch item without request_id", lambda c, s: c.pos.redemption.RedeemBatch(
        R.RedeemBatchRequest(items=[R.RedeemRequest(code=s.paid.codes[0].code,
                                                    request_id=uid("bad")),
                                    R.RedeemRequest(code="BAD-1")])),
     (INVALID, "items[1].request_id")),
    ("RedeemStream without request_id", lambda c, s: list(c.pos.redemption.RedeemStream(iter([
        R.RedeemRequest(code=s.paid.codes[0].code)]))), (INVALID, "request_id")),
    ("VerifyCode malformed and unknown", lambda c, s: [c.pos.redemption.VerifyCode(
        R.VerifyCodeRequest(code=code)) for code in ("", uid("BAD-UNKNOWN"))],
     lambda replies: [reply.status for reply in replies] == [R.VERIFY_STATUS_MALFORMED,
                                                             R.VERIFY_STATUS_NOT_FOUND]),
]


def _row_id(row) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


@pytest.mark.parametrize("name, call, expected", BAD_INPUT, ids=[_row_id(row)
                                                                   for row in BAD_INPUT])
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(name, call, expected, c,
                                                                   sentinel):
    watched = lambda: (c.admin.stock(sentinel.sku_id),  # noqa: E731
                       c.admin.stock(sentinel.usd_sku_id),
                       c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(
                           sku_id=sentinel.sku_id)).sku,
                       c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
                           order_id=sentinel.paid.order_id)).order,
                       c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
                           order_id=sentinel.held.order_id)).order)
    before = watched()
    if callable(expected):
        assert expected(call(c, sentinel))
    else:
        code, field = expected
        error = rpc_error(call, c, sentinel)
        assert error.code() == code, error.details()
        if field is not None:  # "<field>: <what is wrong>"
            named, _, _ = error.details().partition(":")
            assert field in named, error.details()
        assert_no_plaintext(error.details(), sentinel.codes, "an error message")
    assert watched() == before


# -- SIGTERM with calls in flight -----------------------------------------------------------------

def test_sigterm_drains_in_flight_calls_and_loses_no_acknowledged_write(tmp_path):
    """~100 clients redeem and order without pause; SIGTERM lands mid-stream. Every answer a
    client got must be on disk after a restart; every other call failed UNAVAILABLE or
    CANCELLED; the server exits 0."""
    data_dir = tmp_path / "data"
    first = Server(data_dir, tmp_path, "drain").start()
    acknowledged_redemptions: dict[str, R.RedeemResponse] = {}
    acknowledged_orders: dict[str, orders_pb2.Order] = {}
    failures: list[grpc.StatusCode] = []
    sku_id, stocked, sold_count = "drain", 1200, 600
    try:
        admin = first.client(first.admin_key)
        shop_key = first.create_key("storefront", "web")[0]
        pos_key = first.create_key("pos", "T-01")[0]
        stocked_sku(admin, sku_id, stocked)
        big_order = buy(first.client(shop_key), sku_id, sold_count).order
        sold = plaintexts(big_order)
        # data keys re-wrapped under a new master key: still readable after the restart
        assert admin.inventory.RotateKeys(inventory_pb2.RotateKeysRequest()).rewrapped_batches

        shop_metadata = [("authorization", f"Bearer {shop_key}")]
        pos_metadata = [("authorization", f"Bearer {pos_key}")]
        clients = 100

        async def storm():
            channels = [grpc.aio.insecure_channel(
                first.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(8)]
            to_redeem = iter(sold)
            completed = 0
            enough = asyncio.Event()

            async def client(index: int):
                nonlocal completed
                channel = channels[index % len(channels)]
                orders_stub = orders_pb2_grpc.OrdersStub(channel)
                redemption_stub = redemption_pb2_grpc.RedemptionStub(channel)
                for step in range(200):  # until the server refuses (or stock runs out)
                    code = next(to_redeem, None) if step % 2 == 0 else None
                    try:
                        if code is not None:
                            reply = await redemption_stub.Redeem(R.RedeemRequest(
                                code=code, request_id=f"drain-{code}"), metadata=pos_metadata,
                                timeout=60)
                            acknowledged_redemptions[code] = reply
                        else:
                            key = f"drain-{index}-{step}"
                            reply = await orders_stub.CreateOrder(order_request(
                                key, sku_id, 1, account=f"acct-{index}-{step}"),
                                metadata=shop_metadata, timeout=60)
                            if reply.status != orders_pb2.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK:
                                acknowledged_orders[key] = reply
                    except grpc.RpcError as error:
                        failures.append(error.code())
                        return
                    completed += 1
                    if completed >= 150:
                        enough.set()

            tasks = [asyncio.ensure_future(client(index)) for index in range(clients)]
            await asyncio.wait_for(enough.wait(), 60)
            first.process.send_signal(signal.SIGTERM)  # while ~100 calls are in flight
            await asyncio.gather(*tasks)
            for channel in channels:
                await channel.close()

        asyncio.run(storm())
        exit_code = first.process.wait(30)
        assert exit_code == 0, first.logs()[-3000:]
    finally:
        first.kill()
    assert failures, "the server answered everything: SIGTERM came too late to test a drain"
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, failures
    assert acknowledged_redemptions and acknowledged_orders

    second = Server(data_dir, tmp_path, "drain-restarted").start()
    try:
        admin = second.client(second.admin_key)
        pos = second.client(pos_key)
        shop = second.client(shop_key)
        for code, reply in acknowledged_redemptions.items():
            assert reply.status == R.REDEEM_STATUS_REDEEMED
            verified = pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
            assert verified.state == common_pb2.CODE_STATE_REDEEMED
            assert (verified.redeemed_at_ms, verified.redeemed_by_terminal) == (
                reply.redeemed_at_ms, "T-01")
        for key, reply in acknowledged_orders.items():
            assert reply.status == CREATED
            stored = shop.orders.GetOrder(orders_pb2.GetOrderRequest(
                order_id=reply.order.order_id))
            assert stored.status == FOUND
            assert stored.order.state == orders_pb2.ORDER_STATE_RESERVED
            assert [code.code_id for code in stored.order.codes] == [
                code.code_id for code in reply.order.codes]
        delivery = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=big_order.order_id))
        assert delivery.status == FOUND and plaintexts(delivery.order) == sold
        stock = counts(admin.stock(sku_id))
        assert stock["REDEEMED"] >= len(acknowledged_redemptions)
        assert stock["RESERVED"] >= len(acknowledged_orders)
        assert sum(stock.values()) == stocked
        logs = first.logs() + second.logs()
        assert "Traceback" not in logs, logs[-3000:]
        assert_no_plaintext(logs, sold, "the server logs")
    finally:
        assert second.stop() == 0


# -- secrets in free text -------------------------------------------------------------------------

QUOTED_IN_REASONS: set[str] = set()  # codes a test deliberately quoted in a free-text reason


def test_a_code_quoted_in_a_complaint_does_not_reach_the_server_log(server, c):
    sku_id = uid("secret-reason")
    stocked_sku(c.admin, sku_id, 2)
    paid = buy(c.web, sku_id, 1)
    code = paid.order.codes[0]
    QUOTED_IN_REASONS.add(code.code)
    reply = c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=code.code_id,
        reason=f"customer says {code.code} was already used"))
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    time.sleep(0.5)  # log lines are written as they happen; give the worker a moment
    assert_no_plaintext(server.logs(), [code.code], "the server logs")


# -- metrics (last: it also checks that nothing before leaked a code) -----------------------------

def _samples(text: str) -> dict[tuple, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_rpcs_latency_stock_and_redemptions_without_secrets(server, c):
    sku_id = uid("metrics")
    stocked_sku(c.admin, sku_id, 5)
    before = _samples(server.metrics())
    paid = buy(c.web, sku_id, 2)
    code = paid.order.codes[0].code
    c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("m")))
    c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("m")))
    rpc_error(c.web.catalog.GetSku, catalog_pb2.GetSkuRequest())  # INVALID_ARGUMENT
    rpc_error(server.client(None).catalog.GetSku, catalog_pb2.GetSkuRequest(sku_id=sku_id))
    rpc_error(c.pos.catalog.GetSku, catalog_pb2.GetSkuRequest(sku_id=sku_id))
    text = server.metrics()
    after = _samples(text)

    def delta(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    create_order = "/kamicore.v1.Orders/CreateOrder"
    get_sku = "/kamicore.v1.Catalog/GetSku"
    # counted before the reply leaves the worker, so exact
    assert delta("kamicore_rpcs_total", method=create_order, code="OK") == 1
    assert delta("kamicore_rpcs_total", method="/kamicore.v1.Orders/ConfirmPayment",
                 code="OK") == 1
    assert delta("kamicore_rpcs_total", method="/kamicore.v1.Redemption/Redeem",
                 code="OK") == 2
    assert delta("kamicore_rpcs_total", method=get_sku, code="INVALID_ARGUMENT") == 1
    assert delta("kamicore_rpcs_total", method=get_sku, code="UNAUTHENTICATED") == 1
    assert delta("kamicore_rpcs_total", method=get_sku, code="PERMISSION_DENIED") == 1
    assert delta("kamicore_rpc_latency_seconds_count", method=create_order) == 1
    assert delta("kamicore_rpc_latency_seconds_sum", method=create_order) > 0
    assert _value(after, "kamicore_rpc_latency_seconds_bucket", method=create_order,
                  le="+Inf") == _value(after, "kamicore_rpc_latency_seconds_count",
                                       method=create_order)
    assert delta("kamicore_redemptions_total", status="REDEEM_STATUS_REDEEMED") == 1
    assert delta("kamicore_redemptions_total", status="REDEEM_STATUS_ALREADY_REDEEMED") == 1
    stock = counts(c.admin.stock(sku_id))
    assert {state: _value(after, "kamicore_stock_codes", sku=sku_id, state=state)
            for state in stock} == stock
    assert stock["SOLD"] == 1 and stock["REDEEMED"] == 1
    assert_no_plaintext(text, ISSUED_CODES, "the metrics")
    logs = server.logs()
    assert_no_plaintext(logs, ISSUED_CODES - QUOTED_IN_REASONS, "the server logs")
    assert "Traceback" not in logs and "internal error" not in logs, logs[-3000:]
