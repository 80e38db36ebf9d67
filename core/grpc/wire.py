"""Between the wire and the domain: protobuf messages to domain types and back.

Nothing below kamicore.grpc imports *_pb2; the servicers decode with these functions, call the
domain or the engine, and encode the plain results here. Status enums need no mapping: the
proto enums generate kamicore.statuses, so a member's number is its wire number.
"""

from __future__ import annotations

from .. import limits
from ..domain.catalog import ChannelPrice, Sku
from ..engine import CodeView, InvalidArgument, OrderView
from ..statuses import DeliveryKind, RoutingStrategy
from ..v1 import catalog_pb2, common_pb2, orders_pb2

# an import header's fields, as the engine names them -> as the caller sent them
IMPORT_HEADER_FIELDS = {"sku": "header.sku_id", "batch": "header.batch_id",
                        "supplier": "header.supplier_id",
                        "unit_cost_micros": "header.unit_cost_micros",
                        "valid_from_ms": "header.valid_from_ms",
                        "valid_until_ms": "header.valid_until_ms"}


class field_names:
    """Rename the field of an InvalidArgument raised inside to the name the caller sent."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, InvalidArgument) and error.field in self.names:
            raise InvalidArgument(self.names[error.field], error.message) from None
        return False


def never_as_zero(valid_until_ms: int) -> int:
    """The wire says "never expires" with 0."""
    return 0 if valid_until_ms >= limits.time_ms_max else valid_until_ms


def sku_from_wire(message: catalog_pb2.Sku) -> Sku:
    return Sku(sku_id=message.sku_id, name=message.name,
               currency=message.face_value.currency,
               face_value_micros=message.face_value.amount_micros,
               delivery_kind=message.delivery_kind,
               prices=tuple(ChannelPrice(price.channel, price.price_micros)
                            for price in message.prices),
               purchase_limit_per_account=message.purchase_limit_per_account,
               low_stock_threshold=message.low_stock_threshold,
               regions=tuple(message.regions), supplier_ids=tuple(message.supplier_ids),
               # UNSPECIFIED is PRIORITY; a number outside the enum is refused by validate
               routing_strategy=message.routing_strategy or RoutingStrategy.PRIORITY,
               replenish_quantity=message.replenish_quantity,
               buy_on_payment=message.buy_on_payment)


def sku_to_wire(sku: Sku | None) -> catalog_pb2.Sku | None:
    if sku is None:
        return None
    return catalog_pb2.Sku(
        sku_id=sku.sku_id, name=sku.name,
        face_value=common_pb2.Money(currency=sku.currency, amount_micros=sku.face_value_micros),
        delivery_kind=DeliveryKind(sku.delivery_kind),
        prices=[catalog_pb2.ChannelPrice(channel=price.channel, price_micros=price.price_micros)
                for price in sku.prices],
        purchase_limit_per_account=sku.purchase_limit_per_account,
        low_stock_threshold=sku.low_stock_threshold, regions=list(sku.regions),
        created_ms=sku.created_ms, updated_ms=sku.updated_ms,
        supplier_ids=list(sku.supplier_ids), routing_strategy=sku.routing_strategy,
        replenish_quantity=sku.replenish_quantity, buy_on_payment=sku.buy_on_payment)


def delivered(code: CodeView, plaintext: str) -> orders_pb2.DeliveredCode:
    return orders_pb2.DeliveredCode(code_id=code.code_id, sku_id=code.sku, code=plaintext,
                                    masked_code=code.masked, state=code.state,
                                    valid_until_ms=never_as_zero(code.valid_until_ms))


def order_to_wire(order_id: str, view: OrderView, meta: dict) -> orders_pb2.Order:
    """An order as its caller sees it; codes in plaintext only when `view` was revealed."""
    order = orders_pb2.Order(
        order_id=order_id, state=view.state,
        buyer=orders_pb2.Buyer(account_id=meta["account"], ip=meta["ip"],
                               device_id=meta["device"]),
        total=common_pb2.Money(currency=meta["currency"], amount_micros=meta["total_micros"]),
        hold_until_ms=view.hold_until_ms, created_ms=view.created_ms,
        payment_reference=meta["payment_reference"], channel=meta["channel"],
        codes_total=len(view.code_ids))
    for sku_id, quantity in meta["lines"]:
        order.lines.add(sku_id=sku_id, quantity=quantity)
    for index, code in enumerate(view.codes):
        order.codes.append(delivered(code, view.plaintexts[index] if view.plaintexts else ""))
    return order
