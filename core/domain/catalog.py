"""The catalog: SKUs with a face value, prices per channel, purchase limits and delivery kind.

Stored as JSON in the engine's `catalog` table and written through the one commit path, so a
SKU change commits like any other change. Creating a SKU also gives it its engine number, so
orders and imports can name it at once. Money is integer micro-units with its currency.
"""

from __future__ import annotations

import dataclasses
import json

from .. import limits
from ..engine import Engine, InvalidArgument
from ..engine.validate import integer, text
from ..statuses import CreateSkuStatus, DeliveryKind, RoutingStrategy, SkuLookupStatus

TABLE = "catalog"


@dataclasses.dataclass(frozen=True)
class ChannelPrice:
    channel: str  # a storefront's channel, or "partner"
    price_micros: int  # in the SKU's currency


@dataclasses.dataclass(frozen=True)
class Sku:
    sku_id: str
    name: str
    currency: str  # ISO 4217, of the face value and every price
    face_value_micros: int
    delivery_kind: DeliveryKind
    prices: tuple[ChannelPrice, ...]
    purchase_limit_per_account: int = 0  # units held in open or paid orders; 0: no limit
    low_stock_threshold: int = 0
    regions: tuple[str, ...] = ()
    created_ms: int = 0
    updated_ms: int = 0
    supplier_ids: tuple[str, ...] = ()  # whose supplier keys may import into it
    # how orders pick among supplier routes (kamicore.domain.routing)
    routing_strategy: RoutingStrategy = RoutingStrategy.PRIORITY
    # codes bought from the preferred supplier when sellable stock falls below
    # low_stock_threshold; 0: never (kamicore.domain.replenishment)
    replenish_quantity: int = 0
    # no pool: CreateOrder reserves nothing and ConfirmPayment buys the codes from a supplier
    buy_on_payment: bool = False

    def price_micros(self, channel: str) -> int | None:
        """The price on `channel`; None when the SKU is not sold there."""
        for price in self.prices:
            if price.channel == channel:
                return price.price_micros
        return None

    def definition(self) -> Sku:
        """What a retry of CreateSku must repeat: everything but the timestamps."""
        return dataclasses.replace(self, created_ms=0, updated_ms=0)

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Sku:
        """A stored SKU. Immutable, so one decoded copy per stored value serves every order
        (CreateOrder reads each of its SKUs)."""
        sku = _decoded.get(value)
        if sku is None:
            fields = json.loads(value)
            fields["delivery_kind"] = DeliveryKind(fields["delivery_kind"])
            fields["prices"] = tuple(ChannelPrice(**price) for price in fields["prices"])
            fields["regions"] = tuple(fields["regions"])
            # SKUs stored before suppliers were listed have none: only admins import into them
            fields["supplier_ids"] = tuple(fields.get("supplier_ids", ()))
            # and SKUs stored before routing strategies route by priority
            fields["routing_strategy"] = RoutingStrategy(
                fields.get("routing_strategy", RoutingStrategy.PRIORITY))
            if len(_decoded) >= limits.skus_decoded_cached_max:
                _decoded.clear()
            sku = _decoded[value] = cls(**fields)
        return sku


_decoded: dict[bytes, Sku] = {}  # stored value -> its decoded SKU (see Sku.decode)


def validate(sku: Sku, field: str = "sku") -> Sku:
    """A clean copy of `sku` (timestamps cleared), or InvalidArgument naming the bad field."""
    text(sku.sku_id, f"{field}.sku_id", limits.name_bytes_max)
    text(sku.name, f"{field}.name", limits.display_name_bytes_max)
    currency = sku.currency
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise InvalidArgument(f"{field}.face_value.currency", "must be an ISO 4217 code")
    integer(sku.face_value_micros, f"{field}.face_value.amount_micros", 0,
            limits.price_micros_max)
    if sku.delivery_kind not in (DeliveryKind.CODE, DeliveryKind.DIRECT_TOPUP):
        raise InvalidArgument(f"{field}.delivery_kind", "must be CODE or DIRECT_TOPUP")
    if len(sku.prices) > limits.prices_per_sku_max:
        raise InvalidArgument(f"{field}.prices",
                              f"has more than {limits.prices_per_sku_max} items")
    channels = set()
    for index, price in enumerate(sku.prices):
        text(price.channel, f"{field}.prices[{index}].channel", limits.name_bytes_max)
        integer(price.price_micros, f"{field}.prices[{index}].price_micros", 0,
                limits.price_micros_max)
        if price.channel in channels:
            raise InvalidArgument(f"{field}.prices[{index}].channel", "is listed twice")
        channels.add(price.channel)
    if len(sku.regions) > limits.regions_per_sku_max:
        raise InvalidArgument(f"{field}.regions",
                              f"has more than {limits.regions_per_sku_max} items")
    for index, region in enumerate(sku.regions):
        text(region, f"{field}.regions[{index}]", limits.region_bytes_max)
    _validate_supplier_ids(sku.supplier_ids, f"{field}.supplier_ids")
    integer(sku.purchase_limit_per_account, f"{field}.purchase_limit_per_account", 0, 2**32 - 1)
    integer(sku.low_stock_threshold, f"{field}.low_stock_threshold", 0, 2**32 - 1)
    if sku.routing_strategy not in set(RoutingStrategy):
        raise InvalidArgument(f"{field}.routing_strategy",
                              "must be PRIORITY, CHEAPEST, HIGHEST_SUCCESS_RATE or FASTEST")
    _validate_supply(sku, field)
    return dataclasses.replace(sku, delivery_kind=DeliveryKind(sku.delivery_kind),
                               routing_strategy=RoutingStrategy(sku.routing_strategy),
                               buy_on_payment=bool(sku.buy_on_payment),
                               prices=tuple(sku.prices), regions=tuple(sku.regions),
                               supplier_ids=tuple(sku.supplier_ids), created_ms=0, updated_ms=0)


def _validate_supply(sku: Sku, field: str) -> None:
    """How a SKU gets its codes from suppliers: topped up below a threshold, or bought per
    order; never both (a SKU bought per order keeps no pool to top up)."""
    integer(sku.replenish_quantity, f"{field}.replenish_quantity", 0,
            limits.codes_per_replenishment_max)
    if sku.replenish_quantity and not sku.low_stock_threshold:
        raise InvalidArgument(f"{field}.replenish_quantity",
                              "needs a low_stock_threshold to replenish below")
    if sku.buy_on_payment:
        if sku.delivery_kind != DeliveryKind.CODE:
            raise InvalidArgument(f"{field}.buy_on_payment", "only a CODE SKU buys codes")
        if sku.replenish_quantity:
            raise InvalidArgument(f"{field}.buy_on_payment",
                                  "a SKU bought on payment keeps no pool to replenish")


def _validate_supplier_ids(supplier_ids, field: str) -> None:
    """Supplier ids as an import header and a supplier key's binding name them."""
    if len(supplier_ids) > limits.suppliers_per_sku_max:
        raise InvalidArgument(field, f"has more than {limits.suppliers_per_sku_max} items")
    seen = set()
    for index, supplier_id in enumerate(supplier_ids):
        text(supplier_id, f"{field}[{index}]", limits.name_bytes_max)
        if supplier_id in seen:
            raise InvalidArgument(f"{field}[{index}]", "is listed twice")
        seen.add(supplier_id)


def read(transaction, sku_id: str) -> Sku | None:
    """A SKU as the plan's transaction sees it."""
    stored = transaction.get(TABLE, sku_id.encode())
    return Sku.decode(stored) if stored is not None else None


def _create(transaction, sku: Sku):
    existing = read(transaction, sku.sku_id)
    if existing is not None:
        same = existing.definition() == sku.definition()
        return (CreateSkuStatus.CREATED if same else CreateSkuStatus.ALREADY_EXISTS), existing
    sku = dataclasses.replace(sku, created_ms=transaction.now_ms, updated_ms=transaction.now_ms)
    transaction.ensure_sku(sku.sku_id.encode())
    transaction.put(TABLE, sku.sku_id.encode(), sku.encode())
    return CreateSkuStatus.CREATED, sku


def _update(transaction, sku: Sku):
    existing = read(transaction, sku.sku_id)
    if existing is None:
        return SkuLookupStatus.NOT_FOUND, None
    # identity, delivery kind and face value are fixed once codes may exist
    sku = dataclasses.replace(sku, delivery_kind=existing.delivery_kind,
                              currency=existing.currency,
                              face_value_micros=existing.face_value_micros,
                              created_ms=existing.created_ms, updated_ms=transaction.now_ms)
    transaction.put(TABLE, sku.sku_id.encode(), sku.encode())
    return SkuLookupStatus.FOUND, sku


class Catalog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _plan_create(self, sku: Sku, actor: str):
        return self.engine.plan(_create, (validate(sku),), actor,
                                full=lambda: (CreateSkuStatus.STORAGE_FULL, None))

    def create(self, sku: Sku, actor: str = "admin") -> tuple[CreateSkuStatus, Sku | None]:
        return self.engine.run(self._plan_create(sku, actor))

    async def create_async(self, sku: Sku, actor: str = "admin"):
        return await self.engine.run_async(self._plan_create(sku, actor))

    async def update_async(self, sku: Sku,
                           actor: str = "admin") -> tuple[SkuLookupStatus, Sku | None]:
        return await self.engine.run_async(self.engine.plan(
            _update, (validate(sku),), actor,
            full=lambda: (SkuLookupStatus.STORAGE_FULL, None)))

    def get(self, sku_id: str) -> Sku | None:
        text(sku_id, "sku_id", limits.name_bytes_max)
        stored = self.engine.get(TABLE, sku_id.encode())
        return Sku.decode(stored) if stored is not None else None

    def list(self, page_size: int, page_token: str) -> tuple[list[Sku], str]:
        """A page of SKUs in id order, and the token of the next page ("" after the last)."""
        page_size = page_size or limits.skus_per_page_default
        integer(page_size, "page_size", 1, limits.skus_per_page_max)
        text(page_token, "page_token", limits.name_bytes_max, required=False)
        start = page_token.encode() + b"\0" if page_token else b""
        found = self.engine.scan(TABLE, start, page_size + 1)
        skus = [Sku.decode(value) for _, value in found[:page_size]]
        return skus, (skus[-1].sku_id if len(found) > page_size else "")


__all__ = ["Catalog", "ChannelPrice", "Sku", "read", "validate"]
