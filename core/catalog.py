"""The catalog: SKUs with prices per channel, purchase limits and delivery kind.

Stored as serialised kamicore.v1.Sku messages in the `catalog` sub-database, written through
the engine's writer so a SKU change commits like any other change. Creating a SKU also gives it
its engine number, so orders and imports can name it at once.
"""

from __future__ import annotations

from ._codec import name_bytes_max
from .engine import Engine, InvalidArgument, _integer, _text
from .v1 import catalog_pb2

CREATED = catalog_pb2.CREATE_SKU_STATUS_CREATED
ALREADY_EXISTS = catalog_pb2.CREATE_SKU_STATUS_ALREADY_EXISTS
FOUND = catalog_pb2.SKU_LOOKUP_STATUS_FOUND
NOT_FOUND = catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND
display_name_bytes_max = 200
region_bytes_max = 8  # ISO 3166 codes and subdivisions
prices_per_sku_max = 100
regions_per_sku_max = 300
price_micros_max = 10**15
skus_per_page_max = 1000
skus_per_page_default = 100


def validate(sku: catalog_pb2.Sku, field: str = "sku") -> catalog_pb2.Sku:
    """A clean copy of `sku`, or InvalidArgument naming the bad field."""
    _text(sku.sku_id, f"{field}.sku_id", name_bytes_max)
    _text(sku.name, f"{field}.name", display_name_bytes_max)
    currency = sku.face_value.currency
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise InvalidArgument(f"{field}.face_value.currency", "must be an ISO 4217 code")
    _integer(sku.face_value.amount_micros, f"{field}.face_value.amount_micros", 0,
             price_micros_max)
    if sku.delivery_kind not in (catalog_pb2.DELIVERY_KIND_CODE,
                                 catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP):
        raise InvalidArgument(f"{field}.delivery_kind", "must be CODE or DIRECT_TOPUP")
    if len(sku.prices) > prices_per_sku_max:
        raise InvalidArgument(f"{field}.prices", f"has more than {prices_per_sku_max} items")
    channels = set()
    for index, price in enumerate(sku.prices):
        _text(price.channel, f"{field}.prices[{index}].channel", name_bytes_max)
        _integer(price.price_micros, f"{field}.prices[{index}].price_micros", 0,
                 price_micros_max)
        if price.channel in channels:
            raise InvalidArgument(f"{field}.prices[{index}].channel", "is listed twice")
        channels.add(price.channel)
    if len(sku.regions) > regions_per_sku_max:
        raise InvalidArgument(f"{field}.regions", f"has more than {regions_per_sku_max} items")
    for index, region in enumerate(sku.regions):
        _text(region, f"{field}.regions[{index}]", region_bytes_max)
    clean = catalog_pb2.Sku()
    clean.CopyFrom(sku)
    clean.ClearField("created_ms")
    clean.ClearField("updated_ms")
    return clean


def _definition(sku: catalog_pb2.Sku) -> bytes:
    copy = catalog_pb2.Sku()
    copy.CopyFrom(sku)
    copy.ClearField("created_ms")
    copy.ClearField("updated_ms")
    return copy.SerializeToString(deterministic=True)


def _create(tx, sku: catalog_pb2.Sku):
    key = sku.sku_id.encode()
    stored = tx.txn.get(key, db=tx.dbs.catalog)
    if stored is not None:
        existing = catalog_pb2.Sku.FromString(stored)
        return (CREATED if _definition(existing) == _definition(sku) else ALREADY_EXISTS,
                existing)
    sku.created_ms = sku.updated_ms = tx.now_ms
    tx.sku_no(key, True)
    tx.txn.put(key, sku.SerializeToString(deterministic=True), db=tx.dbs.catalog)
    return CREATED, sku


def _update(tx, sku: catalog_pb2.Sku):
    key = sku.sku_id.encode()
    stored = tx.txn.get(key, db=tx.dbs.catalog)
    if stored is None:
        return NOT_FOUND, None
    existing = catalog_pb2.Sku.FromString(stored)
    # identity, delivery kind and face value are fixed once codes may exist
    sku.delivery_kind = existing.delivery_kind
    sku.face_value.CopyFrom(existing.face_value)
    sku.created_ms = existing.created_ms
    sku.updated_ms = tx.now_ms
    tx.txn.put(key, sku.SerializeToString(deterministic=True), db=tx.dbs.catalog)
    return FOUND, sku


class Catalog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, sku: catalog_pb2.Sku, actor: str = "admin"):
        return self.engine._run(_create, (validate(sku),), actor)

    async def create_async(self, sku, actor: str = "admin"):
        return await self.engine.submit_async(_create, (validate(sku),), actor)

    async def update_async(self, sku, actor: str = "admin"):
        return await self.engine.submit_async(_update, (validate(sku),), actor)

    def get(self, sku_id: str, txn=None) -> catalog_pb2.Sku | None:
        if txn is None:
            with self.engine.read() as txn:
                return self.get(sku_id, txn)
        stored = txn.get(sku_id.encode(), db=self.engine.dbs.catalog)
        return catalog_pb2.Sku.FromString(stored) if stored is not None else None

    def list(self, page_size: int, page_token: str) -> tuple[list[catalog_pb2.Sku], str]:
        page_size = page_size or skus_per_page_default
        _integer(page_size, "page_size", 1, skus_per_page_max)
        _text(page_token, "page_token", name_bytes_max, required=False)
        skus = []
        with self.engine.read() as txn, txn.cursor(db=self.engine.dbs.catalog) as cursor:
            if page_token:
                found = cursor.set_range(page_token.encode() + b"\0")
            else:
                found = cursor.first()
            while found and len(skus) < page_size:
                skus.append(catalog_pb2.Sku.FromString(cursor.value()))
                found = cursor.next()
            next_token = skus[-1].sku_id if found and skus else ""
        return skus, next_token


def price_micros(sku: catalog_pb2.Sku, channel: str) -> int | None:
    for price in sku.prices:
        if price.channel == channel:
            return price.price_micros
    return None

