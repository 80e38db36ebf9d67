"""The wire side of codes bought at payment time (kamicore.domain.code_purchases): such an order
holds no codes until its purchase is delivered, so until then it is shown from its own
bookkeeping, with its purchase attempts; once delivered it is an order with codes like any
other."""

from __future__ import annotations

from ..statuses import OrderState, TopUpState
from ..v1 import common_pb2, orders_pb2
from .topups import attempt_to_wire


def undelivered_to_wire(order_id: str, meta: dict, attempts: list[dict]) -> orders_pb2.Order:
    """An order whose codes are not bought yet: RESERVED while it awaits payment or its codes
    (topup_state PENDING), or after every supplier failed (FAILED_REFUND_REQUIRED); CANCELLED
    when cancelled unpaid."""
    purchase = meta["purchase"]
    cancelled = meta.get("cancelled_ms") and not meta["payment_reference"]
    order = orders_pb2.Order(
        order_id=order_id, state=OrderState.CANCELLED if cancelled else OrderState.RESERVED,
        buyer=orders_pb2.Buyer(account_id=meta["account"], ip=meta["ip"],
                               device_id=meta["device"]),
        total=common_pb2.Money(currency=meta["currency"], amount_micros=meta["total_micros"]),
        created_ms=meta["created_ms"], payment_reference=meta["payment_reference"],
        channel=meta["channel"],
        topup_state=TopUpState[purchase["state"]] if purchase["state"] else 0,
        attempts=[attempt_to_wire(attempt) for attempt in attempts],
        reconciliation_required=bool(purchase["reconcile"]))
    for sku_id, quantity in meta["lines"]:
        order.lines.add(sku_id=sku_id, quantity=quantity)
    return order


def add_purchase(order: orders_pb2.Order, meta: dict, attempts: list[dict]) -> None:
    """A delivered order's purchase: its state (FULFILLED) and attempts."""
    purchase = meta["purchase"]
    order.topup_state = TopUpState[purchase["state"]] if purchase["state"] else 0
    order.attempts.extend(attempt_to_wire(attempt) for attempt in attempts)
    order.reconciliation_required = bool(purchase["reconcile"])
