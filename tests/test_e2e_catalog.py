"""The Catalog service end to end: SKUs created, read, updated and listed through the stubs,
against the `kamicore serve` shared by the end-to-end tests (tests/conftest.py)."""

from __future__ import annotations

from kamicore.v1 import catalog_pb2

from .e2e_support import uid
from .server_harness import PRICE_MICROS, create_sku, sku_message


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
    assert got.status == catalog_pb2.SKU_LOOKUP_STATUS_FOUND and got.sku.sku_id == sku_id
    assert c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku == created
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
