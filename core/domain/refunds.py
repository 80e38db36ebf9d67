"""Refunds and corrections of paid orders, and the order steps that book money (called by
kamicore.domain.orders' plan functions, in their commits).

When a buyer has seen an order's codes: a pool order's at payment (ConfirmPayment's reply
carries every code in plaintext); a bought-code order's codes arrive with the supplier's answer
unseen (meta `unseen`) until a reveal shows them (GetDelivery, or a ConfirmPayment answering
PAID, both audited: `reveal`); a replacement in ReportInvalidCode's reply. The rules:
- CancelOrder on a paid order voids the codes nobody has seen and refunds them; a seen code is
  refunded only when it was reported invalid and could not be replaced (each once); a top-up
  or bought-code order that failed at every supplier was refunded when it failed. Then it
  answers REFUNDED; with nothing refundable ALREADY_PAID, and nothing changes.
- ReportInvalidCode charges the invalid code's cost to its batch's supplier and books the
  replacement's cost, once per code (a retry gets the engine's first answer and books nothing).
Every correction is a new ledger entry (kamicore.domain.bookings).
"""

from __future__ import annotations

import json

from ..engine import Engine
from ..statuses import (
    CancelOrderStatus, CodeOpStatus, CodeState, ConfirmPaymentStatus, ReportInvalidStatus,
)
from . import bookings, routing

META_TABLE = "order_meta"  # kamicore.domain.orders' (which imports this module)
FAILED_REFUND_REQUIRED = "FAILED_REFUND_REQUIRED"  # topups' and code_purchases' state
FULFILLED = "FULFILLED"


def _meta(transaction, order_id: bytes) -> dict | None:
    value = transaction.get(META_TABLE, order_id)
    return json.loads(value) if value is not None else None


def _put(transaction, order_id: bytes, meta: dict) -> None:
    transaction.put(META_TABLE, order_id, json.dumps(meta, sort_keys=True).encode())


def paid(transaction, order_id: bytes, meta: dict, provider: str) -> None:
    """A pool order's codes sold at payment (seen by its buyer in the reply): the sale and
    its codes' cost. The caller writes meta."""
    meta["provider"] = provider
    bookings.post(transaction, meta, [bookings.sale_entry(order_id, meta),
                                      *bookings.delivered_entries(transaction, order_id, meta)])


def refund_required(transaction, order_id: bytes, meta: dict, reference: str, provider: str):
    """A payment of the order's total landed when the order could not be sold any more: owed
    back, once per reference -> ConfirmPayment's answer."""
    if bookings.payment_refund(transaction, order_id, meta, reference, provider):
        _put(transaction, order_id, meta)
    return ConfirmPaymentStatus.REFUND_REQUIRED, False, []


def cancel_paid(transaction, order_id: bytes, meta: dict) -> CancelOrderStatus:
    """CancelOrder of a paid order (see the module docstring)."""
    progress = meta.get("topup") or meta.get("purchase")
    if progress is not None and ("topup" in meta or progress["state"] != FULFILLED):
        return (CancelOrderStatus.REFUNDED if progress["state"] == FAILED_REFUND_REQUIRED
                else CancelOrderStatus.ALREADY_PAID)
    codes = transaction.order_codes(order_id)
    if meta.pop("unseen", False):
        unseen = [code for code in codes if code.state == CodeState.SOLD]
        statuses = transaction.void([code.code_id for code in unseen])
        assert all(status == CodeOpStatus.DONE for status in statuses), statuses
        bookings.codes_voided(transaction, order_id, meta, unseen)
        bookings.refund_codes(transaction, order_id, meta, unseen)
    bookings.refund_codes(transaction, order_id, meta, bookings.refundable_invalid(meta, codes))
    if not meta.get("refunded_ms"):
        return CancelOrderStatus.ALREADY_PAID
    _put(transaction, order_id, meta)
    return CancelOrderStatus.REFUNDED


def reveal(transaction, order_id: bytes) -> None:
    """The order's codes are shown to its buyer: audited, and no longer unseen."""
    transaction.audit_reveal(order_id)
    meta = _meta(transaction, order_id)
    if meta is not None and meta.pop("unseen", False):
        _put(transaction, order_id, meta)


def report_invalid(transaction, order_id: bytes, code_id: int):
    """ReportInvalidCode in one commit: the engine's transition, the invalid code's cost
    charged to its batch's supplier (counted in its statistics too), the replacement's cost
    -> (status, replacement code id or 0)."""
    status, replacement = transaction.report_invalid(order_id, code_id)
    meta = _meta(transaction, order_id)
    if status not in (ReportInvalidStatus.REISSUED, ReportInvalidStatus.NO_REPLACEMENT) \
            or meta is None:
        return status, replacement
    meta.pop("unseen", None)  # the replacement is shown in the reply
    reported = meta.setdefault("invalid_codes", [])
    if code_id not in reported:
        reported.append(code_id)
        [code] = transaction.order_codes(order_id, [code_id])
        bookings.code_claimed(transaction, order_id, meta, code)
        if replacement:
            bookings.codes_delivered(transaction, order_id, meta,
                                     transaction.order_codes(order_id, [replacement]))
        if code.supplier:
            routing.record_invalid_code(transaction, code.sku, code.batch, code.supplier,
                                        code_id)
    _put(transaction, order_id, meta)
    return status, replacement


async def report_invalid_code(engine: Engine, order_id: str, code_id: int, actor: str):
    """-> (ReportInvalidStatus, replacement code id or 0)."""
    return await engine.run_async(engine.plan(
        report_invalid, (order_id.encode(), code_id), actor,
        full=lambda: (ReportInvalidStatus.STORAGE_FULL, 0)))
