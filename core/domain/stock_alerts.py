"""Low-stock alerts: ONE stock.low event each time a code SKU's sellable stock falls below its
low-stock threshold, re-armed once it is back at or above it (after an import).

The test and the flag (table `stock_alerts`: sku id -> b"" while the SKU is low) are in the
commit that saw the crossing - an order's, since orders are what take stock - and LMDB
serialises every worker's commits, so however many orders cross at once the event is written
once. Re-arming happens at the next order that finds the stock back up; nothing is written
while the stock stays on one side.
"""

from __future__ import annotations

from .. import limits
from ..statuses import DeliveryKind
from . import catalog, events

TABLE = "stock_alerts"


def watched(sku: catalog.Sku) -> bool:
    return bool(sku.low_stock_threshold and sku.delivery_kind == DeliveryKind.CODE
                and not sku.buy_on_payment)


def check(transaction, sku: catalog.Sku) -> None:
    """After an order took stock of `sku`: alert when it is now below its threshold."""
    if not watched(sku):
        return
    sellable = transaction.sellable(sku.sku_id.encode(), limits.sellable_keys_counted_max)
    if sellable is None:  # too many expired codes to count in an order's commit
        return
    key = sku.sku_id.encode()
    alerted = transaction.get(TABLE, key) is not None
    if sellable < sku.low_stock_threshold and not alerted:
        transaction.put(TABLE, key, b"")
        events.emit(transaction, events.STOCK_LOW, sku=sku.sku_id, quantity=sellable)
    elif sellable >= sku.low_stock_threshold and alerted:
        transaction.delete(TABLE, key)
