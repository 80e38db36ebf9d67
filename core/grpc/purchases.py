"""The wire side of codes bought at payment time (kamicore.domain.code_purchases): such an order
holds no codes until its purchase is delivered, so until then it is shown from its own
bookkeeping, with its purchase attempts; once delivered it is an order with codes like any
other."""

from __future__ import annotations

from ..statuses import OrderState
from ..v1 import orders_pb2
from .topups import add_progress, supplied_order_to_wire


def undelivered_to_wire(order_id: str, meta: dict, attempts: list[dict]) -> orders_pb2.Order:
    """An order whose codes are not bought yet: RESERVED while it awaits payment or its codes
    (topup_state PENDING), or after every supplier failed (FAILED_REFUND_REQUIRED); CANCELLED
    when cancelled unpaid."""
    cancelled = meta.get("cancelled_ms") and not meta["payment_reference"]
    return supplied_order_to_wire(order_id, meta, meta["purchase"], attempts,
                                  OrderState.CANCELLED if cancelled else OrderState.RESERVED)


def add_purchase(order: orders_pb2.Order, meta: dict, attempts: list[dict]) -> None:
    """A delivered order's purchase: its state (FULFILLED) and attempts."""
    add_progress(order, meta["purchase"], attempts)
