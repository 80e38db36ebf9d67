"""The wire side of direct top-ups: a top-up order with its attempts, and the gRPC
SupplierCallback (decided by the same handler as the HTTP listener's:
kamicore.runtime.callbacks)."""

from __future__ import annotations

from .. import limits
from ..domain import topups
from ..engine import InvalidArgument
from ..engine.validate import integer, text
from ..runtime import callbacks
from ..statuses import OrderState, SupplierCallbackStatus, TopUpAttemptState, TopUpState
from ..v1 import common_pb2, orders_pb2, suppliers_pb2  # noqa: F401 (the request's type)
from .gate import PermissionDenied, principal

CALLBACK_STATUS = {
    topups.APPLIED: SupplierCallbackStatus.ACCEPTED,
    topups.LATE: SupplierCallbackStatus.LATE,
    topups.DUPLICATE: SupplierCallbackStatus.DUPLICATE,
    topups.REPLAYED: SupplierCallbackStatus.REPLAYED,
    topups.CONFLICT: SupplierCallbackStatus.CONFLICT,
    topups.UNKNOWN_REQUEST: SupplierCallbackStatus.UNKNOWN_REQUEST,
    callbacks.UNKNOWN_SUPPLIER: SupplierCallbackStatus.SUPPLIER_NOT_FOUND,
    callbacks.BAD_SIGNATURE: SupplierCallbackStatus.BAD_SIGNATURE,
    callbacks.STALE_TIMESTAMP: SupplierCallbackStatus.STALE_TIMESTAMP,
    callbacks.STORAGE_FULL: SupplierCallbackStatus.STORAGE_FULL,
}


def attempt_to_wire(attempt: dict) -> orders_pb2.TopUpAttempt:
    """What an order's owner sees of an attempt (its recipient is the order's; no secret is
    ever in an attempt)."""
    return orders_pb2.TopUpAttempt(
        supplier_id=attempt["supplier_id"], request_id=attempt["request_id"],
        state=TopUpAttemptState[attempt["state"]], created_ms=attempt["created_ms"],
        answered_ms=attempt["answered_ms"], supplier_reference=attempt["supplier_reference"],
        reconciliation_required=attempt["late"], message=attempt["message"],
        number=attempt["number"])


def supplied_order_to_wire(order_id: str, meta: dict, progress: dict, attempts: list[dict],
                           state: OrderState, **fields) -> orders_pb2.Order:
    """An order a supplier delivers (a top-up, or codes bought at payment) as its own
    bookkeeping shows it: `progress` is its topup or purchase record."""
    order = orders_pb2.Order(
        order_id=order_id, state=state,
        buyer=orders_pb2.Buyer(account_id=meta["account"], ip=meta["ip"],
                               device_id=meta["device"]),
        total=common_pb2.Money(currency=meta["currency"], amount_micros=meta["total_micros"]),
        created_ms=meta["created_ms"], payment_reference=meta["payment_reference"],
        channel=meta["channel"], **fields)
    add_progress(order, progress, attempts)
    for sku_id, quantity in meta["lines"]:
        order.lines.add(sku_id=sku_id, quantity=quantity)
    return order


def add_progress(order: orders_pb2.Order, progress: dict, attempts: list[dict]) -> None:
    """The supplier's part of an order: its state, its attempts, and whether it needs
    reconciling."""
    order.topup_state = TopUpState[progress["state"]] if progress["state"] else 0
    order.attempts.extend(attempt_to_wire(attempt) for attempt in attempts)
    order.reconciliation_required = bool(progress["reconcile"])


def order_to_wire(order_id: str, meta: dict, attempts: list[dict]) -> orders_pb2.Order:
    """A top-up order: nothing is held, so its state comes from its own bookkeeping."""
    topup = meta["topup"]
    state = (OrderState.PAID if meta["payment_reference"]
             else OrderState.CANCELLED if meta.get("cancelled_ms")
             else OrderState.EXPIRED if meta.get("expired_ms") else OrderState.RESERVED)
    return supplied_order_to_wire(
        order_id, meta, topup, attempts, state, recipient=meta["recipient"],
        hold_until_ms=topup["hold_until_ms"] if state == OrderState.RESERVED else 0)


async def supplier_callback(handler: callbacks.CallbackHandler,
                            request: suppliers_pb2.SupplierCallbackRequest):
    """kamicore.v1.Suppliers/SupplierCallback -> its status."""
    text(request.supplier_id, "supplier_id", limits.name_bytes_max)
    caller = principal()
    if caller.binding != request.supplier_id:
        raise PermissionDenied("supplier_id", f"this key is bound to supplier "
                               f"{caller.binding!r}; it may call back for that one only")
    if not request.payload:
        raise InvalidArgument("payload", "is required")
    if len(request.payload) > limits.callback_bytes_max:
        raise InvalidArgument("payload", f"is longer than {limits.callback_bytes_max} bytes")
    integer(request.timestamp_ms, "timestamp_ms", 1, limits.time_ms_max)
    text(request.signature, "signature", limits.callback_signature_chars_max)
    outcome, detail = await handler.handle(request.supplier_id, request.timestamp_ms,
                                           request.payload, request.signature)
    if outcome == callbacks.MALFORMED:  # signed by the supplier, but not a callback
        field, _, problem = detail.partition(": ")
        raise InvalidArgument("payload", problem if field == "body" else detail)
    return CALLBACK_STATUS[outcome]
