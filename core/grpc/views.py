"""What each role sees of the catalog and of the stock: what it needs, nothing more.

- admin: everything.
- supplier (GetStock only): its own batches, those its key's supplier id delivered; every
  figure of the reply (counts by state, sellable, expired, soonest expiry, low stock) counts
  its own codes only, so no total tells it anything about another supplier's codes.
- storefront and partner: of the stock, the sellable count and the low-stock flag (which
  follows from sellable and the SKU's threshold, shown to them anyway): no counts by state,
  no batch or supplier ids. Of a SKU, only the price of their own channel: the channel a
  storefront key is bound to, "partner" for partner keys (partner keys are not bound to
  anything; orders price them on that channel too, see kamicore.auth.Principal.channel), and
  no supplier ids.

Anything else falls to the narrowest view, so a role added later sees nothing by accident.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .. import limits
from ..auth import Principal
from ..domain.catalog import Sku
from ..engine import BatchStock, Stock
from ..statuses import CodeState, StockStatus
from ..v1 import inventory_pb2
from .wire import never_as_zero


def sku_seen_by(caller: Principal, sku: Sku) -> Sku:
    """`sku` as `caller` may see it."""
    if caller.role == "admin":
        return sku
    return dataclasses.replace(
        sku, prices=tuple(price for price in sku.prices if price.channel == caller.channel),
        supplier_ids=(), replenish_quantity=0)


def stock_seen_by(caller: Principal, sku: Sku, stock: Stock,
                  batch_stock: Callable[[], list[BatchStock]]
                  ) -> inventory_pb2.GetStockResponse:
    """A found SKU's GetStock reply as `caller` may see it; batch_stock() reads the batches
    (only for the roles that see them: it scans every batch)."""
    if caller.role == "admin":
        return _reply(sku, stock.counts, stock.sellable, stock.expired_available,
                      stock.soonest_valid_until_ms, batch_stock())
    if caller.role == "supplier":
        return _supplier_reply(sku, [batch for batch in batch_stock()
                                     if batch.supplier == caller.binding])
    return inventory_pb2.GetStockResponse(status=StockStatus.FOUND, sellable=stock.sellable,
                                          low_stock=stock.sellable < sku.low_stock_threshold)


def _supplier_reply(sku: Sku, batches: list[BatchStock]) -> inventory_pb2.GetStockResponse:
    """The reply of GetStock computed from `batches` alone."""
    counts = dict.fromkeys(CodeState, 0)
    for batch in batches:
        for state, count in batch.counts.items():
            counts[state] += count
    sellable = sum(batch.sellable for batch in batches)
    soonest = min((batch.valid_until_ms for batch in batches if batch.sellable), default=0)
    return _reply(sku, counts, sellable, sum(batch.expired_available for batch in batches),
                  soonest, batches)


def _reply(sku: Sku, counts: dict, sellable: int, expired_available: int, soonest_ms: int,
           batches: list[BatchStock]) -> inventory_pb2.GetStockResponse:
    response = inventory_pb2.GetStockResponse(
        status=StockStatus.FOUND, sellable=sellable, expired_available=expired_available,
        soonest_valid_until_ms=never_as_zero(soonest_ms),
        low_stock=sellable < sku.low_stock_threshold)
    for state, count in counts.items():
        response.counts.add(state=state, count=count)
    response.batches_omitted = max(0, len(batches) - limits.batches_listed_max)
    for batch in batches[:limits.batches_listed_max]:  # every reply stays bounded
        entry = response.batches.add(batch_id=batch.batch, supplier_id=batch.supplier,
                                     valid_until_ms=never_as_zero(batch.valid_until_ms))
        for state, count in batch.counts.items():
            entry.counts.add(state=state, count=count)
    return response
