"""Codes bought at payment time: orders of a SKU with `buy_on_payment` (no pool) get their codes
from a supplier's PurchaseCodes once paid, and are delivered like pool codes.

They follow the attempt path of direct top-ups (kamicore.domain.topups): each attempt is a
record in `topup_attempts` with kind "purchase", committed BEFORE its call under its own request
id (the supplier's idempotency key), and indexed in `topup_unsettled` until its outcome is
known, so the dispatcher's recovery finds it after a crash. The rules:
- a timeout, a transport error or a bad answer signature is UNKNOWN, never a failure: the same
  PurchaseCodes goes to the same supplier again under the same request id (a supplier answers
  a request id it knows with its first answer, selling once);
- only a definite FAILED (or an answer kamicore cannot use: wrong count, bad batch terms,
  codes it cannot store) fails over to the next ranked supplier, in the commit that records
  it; when every route failed the order is FAILED_REFUND_REQUIRED;
- a success is imported (the supplier's batch id, unit cost, supplier id, valid_until), and
  the codes are reserved for the order and sold to it, ALL IN THE COMMIT that settles the
  attempt: the order is PAID with its codes exactly once, whoever settles it;
- a success for an order already settled is recorded and flagged for reconciliation, and its
  codes are not imported (nobody could be delivered them).
CreateOrder reserves nothing for such an order (it holds its buyer's purchase limit like any
other). Plaintext codes pass through `settle`'s arguments only, into the engine's import.
"""

from __future__ import annotations

import json

from .. import limits
from ..engine import InvalidArgument
from ..statuses import (
    ConfirmPaymentStatus, ConfirmStatus, ImportCodeStatus, ImportStatus, ReserveStatus,
)
from . import bookings, events, routing, topups

KIND = "purchase"
META_TABLE = topups.META_TABLE
DELIVERY_HOLD_MS = 60_000  # the reservation confirmed in the same commit never lapses

# an order's purchase state once paid, and its ConfirmPayment answer
PENDING = "PENDING"
FULFILLED = "FULFILLED"
FAILED_REFUND_REQUIRED = "FAILED_REFUND_REQUIRED"
ORDER_STATUS = {PENDING: ConfirmPaymentStatus.PENDING, FULFILLED: ConfirmPaymentStatus.PAID,
                FAILED_REFUND_REQUIRED: ConfirmPaymentStatus.FAILED_REFUND_REQUIRED}


def check_order(skus: dict, request: dict) -> bool:
    """Whether the order buys its codes at payment time; InvalidArgument naming the field when
    its lines cannot (one line: one supplier purchase per order)."""
    if not any(sku.buy_on_payment for sku in skus.values()):
        return False
    if len(request["lines"]) != 1:
        raise InvalidArgument("lines", "an order of a SKU bought on payment has exactly one "
                              "line")
    return True


def new_order(meta: dict) -> None:
    meta["purchase"] = {"state": "", "attempts": [], "fulfilled_by": "", "reconcile": []}


def is_purchase(meta: dict | None) -> bool:
    return meta is not None and "purchase" in meta


def status_of(meta: dict) -> ConfirmPaymentStatus:
    return ORDER_STATUS[meta["purchase"]["state"]]


def _put_meta(transaction, order_key: bytes, meta: dict) -> None:
    transaction.put(META_TABLE, order_key, json.dumps(meta, sort_keys=True).encode())


def _next_attempt(transaction, order_id: bytes, meta: dict) -> list[dict]:
    """The next attempt of a purchase, chosen like a top-up's (topups.next_attempt)."""
    [(_, quantity)] = meta["lines"]
    return topups.next_attempt(transaction, order_id, meta, meta["purchase"], {
        "kind": KIND, "quantity": quantity, "batch_id": "", "codes": 0})


def pay(transaction, order_id: bytes, meta: dict, reference: str):
    """The order's payment landed (the shared rungs of ConfirmPayment passed in
    kamicore.domain.orders) -> (status, attempts to call now)."""
    if meta["payment_reference"]:
        return status_of(meta), []
    meta["payment_reference"] = reference
    meta["paid_ms"] = transaction.now_ms
    bookings.sale(transaction, order_id, meta)
    meta["purchase"]["state"] = PENDING
    calls = _next_attempt(transaction, order_id, meta)
    return status_of(meta), calls


def _deliver(transaction, attempt: dict, answer: dict) -> str:
    """Import the bought codes and sell them to the attempt's order -> "" or why not (then
    nothing is sold; codes that did go in stay in the SKU's stock)."""
    sku, order_id = attempt["sku_id"].encode(), attempt["order_id"].encode()
    codes = [code.encode() for code in answer["codes"]]
    status, statuses, _ = transaction.import_codes(
        sku, answer["batch_id"].encode(), attempt["supplier_id"].encode(),
        answer["unit_cost_micros"], 0, answer["valid_until_ms"], codes)
    if status != ImportStatus.OK:
        return f"import {status.name}"
    refused = [value for value in statuses if value != ImportCodeStatus.IMPORTED]
    if refused:  # a code already stored (sold before?) or malformed: not what was paid for
        return f"{len(refused)} of the codes could not be stored ({refused[0].name})"
    if transaction.reserve(order_id, [(sku, attempt["quantity"])],
                           DELIVERY_HOLD_MS) != ReserveStatus.RESERVED:
        return "the bought codes could not be reserved"
    status, _ = transaction.confirm(order_id)
    assert status == ConfirmStatus.SOLD, status
    return ""


def settle(transaction, request_id: str, result: str, message: str, latency_ms: int,
           answer: dict | None):
    """An answer to purchase attempt `request_id` -> (what it did: topups.APPLIED, LATE,
    DUPLICATE or UNKNOWN_REQUEST, the attempts to call now). answer (SUCCEEDED only):
    {"codes", "batch_id", "unit_cost_micros", "valid_until_ms"}, terms already checked."""
    assert result in topups.ANSWERS, result
    attempt = topups.get(transaction, request_id)
    if attempt is None or attempt.get("kind") != KIND:
        return topups.UNKNOWN_REQUEST, []
    now = transaction.now_ms
    if attempt["state"] in topups.SETTLED:
        return topups.DUPLICATE, []
    if result in (topups.PENDING, topups.UNKNOWN):
        if result == topups.UNKNOWN:
            routing.record_outcome(transaction, attempt["supplier_id"], attempt["sku_id"],
                                   topups.UNKNOWN, latency_ms)
        attempt["state"] = result
        attempt["message"] = message[:limits.supplier_message_bytes_max]
        topups.put_attempt(transaction, attempt, topups.query_due_ms(now, attempt["queries"]))
        return topups.APPLIED, []
    order_key = attempt["order_id"].encode()
    meta = json.loads(transaction.get(META_TABLE, order_key))
    purchase = meta["purchase"]
    late = result == topups.SUCCEEDED and purchase["state"] != PENDING
    if result == topups.SUCCEEDED and not late:
        refusal = _deliver(transaction, attempt, answer)
        if refusal:  # bought, but not what kamicore can deliver: fail over, reconcile
            result, message = topups.FAILED, f"unusable answer: {refusal}"
            purchase["reconcile"].append(request_id)
            events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, attempt,
                                "unusable_answer")
        else:  # delivered, unseen until revealed (kamicore.domain.refunds)
            attempt.update(batch_id=answer["batch_id"], codes=len(answer["codes"]))
            meta["unseen"] = True
            bookings.codes_delivered(transaction, order_key, meta,
                                     transaction.order_codes(order_key))
    attempt.update(state=result, answered_ms=now, late=late,
                   message=message[:limits.supplier_message_bytes_max])
    topups.put_attempt(transaction, attempt, None)
    routing.record_outcome(transaction, attempt["supplier_id"], attempt["sku_id"], result,
                           latency_ms, attempt["cost_micros"] * attempt["quantity"]
                           if result == topups.SUCCEEDED else 0, late=late)
    calls = []
    if late:
        purchase["reconcile"].append(request_id)
        events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, attempt,
                            "late_success")
        bookings.supplier_late(transaction, attempt, meta["currency"], attempt["quantity"] * (
            answer["unit_cost_micros"] if answer else attempt["cost_micros"]))
    elif result == topups.SUCCEEDED:
        purchase["state"], purchase["fulfilled_by"] = FULFILLED, request_id
        events.emit_order(transaction, events.ORDER_DELIVERED, order_key, meta,
                          supplier_id=attempt["supplier_id"], request_id=request_id)
    else:
        events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FAILED, attempt, result.lower())
    if result != topups.SUCCEEDED and purchase["state"] == PENDING \
            and purchase["attempts"][-1] == request_id:
        calls = _next_attempt(transaction, order_key, meta)  # fail over
    _put_meta(transaction, order_key, meta)
    return (topups.LATE if late else topups.APPLIED), calls


def attempts_of(view, meta: dict) -> list[dict]:
    """A purchase order's attempts, in order."""
    return [topups.get(view, rid) for rid in meta["purchase"]["attempts"]] \
        if is_purchase(meta) else []


__all__ = ["KIND", "ORDER_STATUS", "attempts_of", "check_order", "is_purchase", "new_order",
           "pay", "settle", "status_of"]
