"""Authorization end to end, against the shared `kamicore serve` (tests/conftest.py): a
supplier key delivers only as itself and only into SKUs that list it, and each role sees what it
needs of the stock and the catalog (suppliers their own batches; storefronts and partners the
sellable count and their own channel's price; admins everything)."""

from __future__ import annotations

import time

import grpc
from kamicore.v1 import catalog_pb2, inventory_pb2

from .e2e_support import plaintexts, rpc_error, uid
from .server_harness import (
    PRICE_MICROS,
    buy,
    counts,
    create_sku,
    import_codes,
    new_codes,
    sku_message,
)

DAY_MS = 86_400_000
NO_CODES = {"AVAILABLE": 0, "RESERVED": 0, "SOLD": 0, "REDEEMED": 0, "FROZEN": 0, "INVALID": 0,
            "VOID": 0}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _denied(error: grpc.RpcError, field: str) -> None:
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()
    assert error.details().startswith(f"{field}: "), error.details()


# -- ImportCodes with a supplier key --------------------------------------------------------------

def test_a_supplier_cannot_import_into_another_suppliers_sku(c):
    theirs = uid("authz-theirs")
    create_sku(c.admin, theirs, suppliers=("S-2",))
    s2_codes = new_codes(2)
    import_codes(c.supplier2, theirs, s2_codes, batch_id=f"{theirs}-s2")
    before = c.admin.stock(theirs)
    # the attack of the issue: codes expiring sooner would be sold first (FEFO)
    sooner_ms = _now_ms() + DAY_MS
    error = rpc_error(import_codes, c.supplier, theirs, new_codes(2), batch_id=f"{theirs}-s1",
                      valid_until_ms=sooner_ms)
    _denied(error, "header.sku_id")
    assert "S-1" in error.details()
    assert c.admin.stock(theirs) == before  # nothing imported
    assert sorted(plaintexts(buy(c.web, theirs, 2).order)) == sorted(s2_codes)

    # a SKU that lists no supplier: supplier keys are refused, admins import for anyone
    unlisted = uid("authz-unlisted")
    create_sku(c.admin, unlisted)
    _denied(rpc_error(import_codes, c.supplier, unlisted, new_codes(1)), "header.sku_id")
    assert c.admin.stock(unlisted).batches == []
    assert import_codes(c.admin, unlisted, new_codes(1), supplier_id="S-9").imported == 1

    # an admin lists S-1 with UpdateSku: from then on S-1 may deliver into it
    updated = c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(
        sku=sku_message(theirs, suppliers=("S-2", "S-1"))))
    assert list(updated.sku.supplier_ids) == ["S-2", "S-1"]
    assert import_codes(c.supplier, theirs, new_codes(2), batch_id=f"{theirs}-s1",
                        valid_until_ms=sooner_ms).imported == 2
    assert sorted(batch.supplier_id for batch in c.admin.stock(theirs).batches) == ["S-1", "S-2"]


def test_a_supplier_imports_only_as_itself(c):
    sku_id = uid("authz-as")
    create_sku(c.admin, sku_id, suppliers=("S-1", "S-2"))
    error = rpc_error(import_codes, c.supplier, sku_id, new_codes(2), batch_id=f"{sku_id}-a",
                      supplier_id="S-2")
    _denied(error, "header.supplier_id")
    stock = c.admin.stock(sku_id)
    assert (counts(stock), stock.sellable, list(stock.batches)) == (NO_CODES, 0, [])
    named = import_codes(c.supplier, sku_id, new_codes(1), batch_id=f"{sku_id}-b",
                         supplier_id="S-1")
    blank = import_codes(c.supplier, sku_id, new_codes(1), batch_id=f"{sku_id}-c",
                         supplier_id="")  # empty: the key's own supplier
    assert (named.imported, blank.imported) == (1, 1)
    assert sorted((batch.batch_id, batch.supplier_id) for batch in
                  c.admin.stock(sku_id).batches) == [(f"{sku_id}-b", "S-1"),
                                                     (f"{sku_id}-c", "S-1")]


# -- GetStock per role ----------------------------------------------------------------------------

def test_get_stock_shows_each_role_what_it_needs(c):
    sku_id = uid("authz-stock")
    create_sku(c.admin, sku_id, suppliers=("S-1", "S-2"), low_stock=5)
    now_ms = _now_ms()
    s1_until, s2_until = now_ms + 60 * DAY_MS, now_ms + 30 * DAY_MS
    import_codes(c.supplier, sku_id, new_codes(3), batch_id=f"{sku_id}-one",
                 valid_until_ms=s1_until)
    import_codes(c.supplier2, sku_id, new_codes(2), batch_id=f"{sku_id}-two",
                 valid_until_ms=s2_until)
    import_codes(c.admin, sku_id, new_codes(4), batch_id=f"{sku_id}-old", supplier_id="S-3",
                 valid_from_ms=now_ms - 2 * DAY_MS, valid_until_ms=now_ms - DAY_MS)
    buy(c.web, sku_id, 1)  # FEFO: one of S-2's codes

    admin = c.admin.stock(sku_id)  # everything
    assert counts(admin) == {**NO_CODES, "AVAILABLE": 8, "SOLD": 1}
    assert (admin.sellable, admin.expired_available, admin.soonest_valid_until_ms,
            admin.low_stock) == (4, 4, s2_until, True)
    assert sorted((batch.batch_id, batch.supplier_id) for batch in admin.batches) == [
        (f"{sku_id}-old", "S-3"), (f"{sku_id}-one", "S-1"), (f"{sku_id}-two", "S-2")]

    one = c.supplier.stock(sku_id)  # its own batch, and figures of its own codes only
    assert [(batch.batch_id, batch.supplier_id) for batch in one.batches] == [
        (f"{sku_id}-one", "S-1")]
    assert counts(one) == {**NO_CODES, "AVAILABLE": 3}
    assert (one.sellable, one.expired_available, one.soonest_valid_until_ms,
            one.low_stock) == (3, 0, s1_until, True)
    raw = one.SerializeToString()
    assert b"S-2" not in raw and b"S-3" not in raw
    assert f"{sku_id}-two".encode() not in raw and f"{sku_id}-old".encode() not in raw
    two = c.supplier2.stock(sku_id)
    assert [batch.supplier_id for batch in two.batches] == ["S-2"]
    assert counts(two) == {**NO_CODES, "AVAILABLE": 1, "SOLD": 1}
    assert (two.sellable, two.expired_available, two.soonest_valid_until_ms) == (1, 0, s2_until)

    for seller in (c.web, c.app, c.partner):  # the sellable count, nothing else
        assert seller.stock(sku_id) == inventory_pb2.GetStockResponse(
            status=inventory_pb2.STOCK_STATUS_FOUND, sellable=4, low_stock=True)


# -- GetSku and ListSkus per role -----------------------------------------------------------------

def _listed(client, sku_id: str) -> catalog_pb2.Sku:
    token = ""
    while True:
        page = client.catalog.ListSkus(catalog_pb2.ListSkusRequest(page_size=1000,
                                                                   page_token=token))
        for sku in page.skus:
            if sku.sku_id == sku_id:
                return sku
        token = page.next_page_token
        assert token, f"{sku_id} is not listed"


def test_storefronts_and_partners_see_only_their_own_channels_price(c):
    sku_id = uid("authz-price")
    created = create_sku(c.admin, sku_id, channels=("web", "app", "partner"),
                         suppliers=("S-1", "S-2"))
    for view in (c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku,
                 _listed(c.admin, sku_id)):
        assert view == created  # admins see everything
        assert len(view.prices) == 3 and list(view.supplier_ids) == ["S-1", "S-2"]
    for client, channel in ((c.web, "web"), (c.app, "app"), (c.partner, "partner")):
        expected = catalog_pb2.Sku()
        expected.CopyFrom(created)
        del expected.prices[:]
        expected.prices.add(channel=channel, price_micros=PRICE_MICROS[channel])
        del expected.supplier_ids[:]
        assert client.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku == expected
        assert _listed(client, sku_id) == expected
    # a SKU not sold on the storefront's channel: shown without any price
    elsewhere = uid("authz-elsewhere")
    create_sku(c.admin, elsewhere, channels=("app",))
    assert list(c.web.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=elsewhere)).sku.prices) \
        == []
    assert list(_listed(c.partner, elsewhere).prices) == []
