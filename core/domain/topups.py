"""Direct top-ups: orders that credit the buyer's account (the `recipient`) through a supplier,
and the attempts that do it.

An attempt is one supplier's try at one order, recorded durably BEFORE its call, under its own
request id (the supplier's idempotency key: every call about that attempt, TopUp or QueryTopUp,
carries it). Its outcome is committed when it arrives, together with the supplier's statistics
(routing.record_outcome). The rules that keep a buyer from being topped up twice by kamicore's
doing:
- a timeout, a transport error or a bad answer is UNKNOWN: the supplier is asked (QueryTopUp),
  never assumed to have failed; PENDING waits for a callback or a follow-up query;
- the order fails over to the next ranked supplier only on a definite FAILED, or a NOT_FOUND
  answer to a query (the supplier never received it); then exactly one next attempt is
  recorded, in the same commit, and only by whoever settled the order's latest attempt;
- the first success fulfils the order; a success arriving for another attempt afterwards (a
  late callback or query answer after a failover) is recorded and flagged for reconciliation,
  never a second fulfilment;
- a settled attempt never changes again (a second, different answer is refused and counted);
- when every route failed definitely the order is FAILED_REFUND_REQUIRED.
Every transition is a plan function here, deciding on the committed state inside the commit, so
workers, the dispatcher and callbacks may race on one order without harm.

Tables: `topup_attempts` (request id -> attempt JSON) and `topup_unsettled` (due ms, 8 bytes
big-endian, + request id -> nothing: attempts whose outcome is not known, by when to ask).
"""

from __future__ import annotations

import hashlib
import json

from .. import limits
from ..engine import InvalidArgument
from ..statuses import ConfirmPaymentStatus, DeliveryKind
from . import bookings, events, routing, suppliers

META_TABLE = "order_meta"  # kamicore.domain.orders' (which imports this module)
ATTEMPTS_TABLE = "topup_attempts"
UNSETTLED_TABLE = "topup_unsettled"
HOLDS_TABLE = "topup_holds"

# attempt states (TopUpAttemptState on the wire)
CALLING = "CALLING"  # recorded; its call is being made: the outcome is not known
UNKNOWN = "UNKNOWN"  # timeout, transport error or bad answer: ask the supplier
PENDING = "PENDING"  # the supplier will answer later (callback), else it is asked
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
NOT_FOUND = "NOT_FOUND"  # a query: the supplier never received it (a definite failure)
UNSETTLED = (CALLING, UNKNOWN, PENDING)
SETTLED = (SUCCEEDED, FAILED, NOT_FOUND)
ANSWERS = (SUCCEEDED, FAILED, PENDING, NOT_FOUND, UNKNOWN)  # what a call or callback may say

# an order's top-up state (TopUpState on the wire), once paid
ORDER_PENDING = "PENDING"
FULFILLED = "FULFILLED"
FAILED_REFUND_REQUIRED = "FAILED_REFUND_REQUIRED"
ORDER_STATUS = {ORDER_PENDING: ConfirmPaymentStatus.PENDING,
                FULFILLED: ConfirmPaymentStatus.FULFILLED,
                FAILED_REFUND_REQUIRED: ConfirmPaymentStatus.FAILED_REFUND_REQUIRED}

# what settling an answer did (kamicore_supplier_callbacks_total{outcome} for callbacks)
APPLIED = "accepted"  # the attempt's outcome (or its PENDING) is recorded
LATE = "late"  # a success after the order succeeded elsewhere or failed over: reconciliation
DUPLICATE = "duplicate"  # the answer the attempt already has: nothing changed
CONFLICT = "conflict"  # a different answer for a settled attempt: nothing changed
UNKNOWN_REQUEST = "unknown"  # no such attempt (of this supplier): nothing changed
REPLAYED = "replayed"  # a callback already received (same signature): nothing changed


def _cut(value: str, bytes_max: int) -> str:
    """`value` in at most `bytes_max` bytes of UTF-8 (a supplier's text, as kept)."""
    return value.encode()[:bytes_max].decode(errors="ignore")


def _reference(value: str) -> str:
    return _cut(value, limits.supplier_reference_bytes_max)


def request_id_for(order_id: bytes, supplier_id: str, number: int) -> str:
    """An attempt's request id: derived from the order, the supplier and the attempt's number,
    so a retry of the same attempt reuses it, and opaque (suppliers never see order ids)."""
    digest = hashlib.sha256(order_id + b"\0" + supplier_id.encode() + b"\0"
                            + str(number).encode()).hexdigest()
    return f"tu-{digest[:limits.topup_request_id_hex_chars]}-{number}"


# -- orders of top-up SKUs (called by kamicore.domain.orders) ---------------------------------

def check_order(skus: dict, request: dict) -> bool:
    """Whether the order is a top-up (every line's SKU DIRECT_TOPUP); InvalidArgument naming
    the field when its lines or recipient do not fit its kind."""
    kinds = {sku.delivery_kind for sku in skus.values()}
    if DeliveryKind.DIRECT_TOPUP not in kinds:
        if request.get("recipient"):
            raise InvalidArgument("recipient", "is only for orders of DIRECT_TOPUP SKUs")
        return False
    if len(kinds) > 1 or len(request["lines"]) != 1:
        raise InvalidArgument("lines", "a top-up order has exactly one line, of a "
                              "DIRECT_TOPUP SKU (top-up and code lines cannot share an order)")
    if request["lines"][0][1] != 1:
        raise InvalidArgument("lines[0].quantity", "a top-up order tops up once: must be 1")
    if not request.get("recipient"):
        raise InvalidArgument("recipient", "is required for a DIRECT_TOPUP SKU")
    return True


def new_order(transaction, order_id: bytes, meta: dict, skus: dict, request: dict) -> None:
    """A top-up order's own bookkeeping, in its order_meta record. Nothing is reserved, but
    its units count against purchase limits until it is paid, cancelled or its hold lapses
    (the hold sweeper: expire_holds)."""
    [(sku_id, _)] = request["lines"]
    meta["recipient"] = request["recipient"]
    meta["topup"] = {"state": "", "attempts": [], "fulfilled_by": "", "reconcile": [],
                     "amount_micros": skus[sku_id].face_value_micros,
                     "hold_until_ms": transaction.now_ms + request["hold_ms"]}
    transaction.put(HOLDS_TABLE, _hold_key(meta, order_id), b"")


def _hold_key(meta: dict, order_id: bytes) -> bytes:
    return meta["topup"]["hold_until_ms"].to_bytes(8, "big") + order_id


def drop_hold(transaction, order_id: bytes, meta: dict) -> None:
    """The order was paid, cancelled or rejected: its hold no longer lapses."""
    transaction.delete(HOLDS_TABLE, _hold_key(meta, order_id))


def expire_holds(transaction, limit: int) -> list[bytes]:
    """Up to `limit` unpaid top-up orders whose hold lapsed, marked expired -> their ids (the
    caller gives their units back). A payment after that still tops up (nothing was held)."""
    due = []
    for key, _ in transaction.scan(HOLDS_TABLE, b"", limit):
        if int.from_bytes(key[:8], "big") > transaction.now_ms:
            break
        order_id = key[8:]
        transaction.delete(HOLDS_TABLE, key)
        meta = json.loads(transaction.get(META_TABLE, order_id))
        meta["expired_ms"] = transaction.now_ms
        transaction.put(META_TABLE, order_id, json.dumps(meta, sort_keys=True).encode())
        due.append(order_id)
    return due


def is_topup(meta: dict | None) -> bool:
    return meta is not None and "topup" in meta


# -- attempts ------------------------------------------------------------------------------------

def _unsettled_key(due_ms: int, request_id: str) -> bytes:
    return due_ms.to_bytes(8, "big") + request_id.encode()


def get(view, request_id: str) -> dict | None:
    value = view.get(ATTEMPTS_TABLE, request_id.encode())
    return json.loads(value) if value is not None else None


def put_attempt(transaction, attempt: dict, due_ms: int | None) -> None:
    """Store an attempt; an unsettled one is indexed under `due_ms` (its old entry dropped)."""
    rid = attempt["request_id"]
    if attempt.get("due_ms"):
        transaction.delete(UNSETTLED_TABLE, _unsettled_key(attempt["due_ms"], rid))
    attempt["due_ms"] = due_ms or 0
    if due_ms:
        transaction.put(UNSETTLED_TABLE, _unsettled_key(due_ms, rid), b"")
    attempt["updated_ms"] = transaction.now_ms
    transaction.put(ATTEMPTS_TABLE, rid.encode(), json.dumps(attempt, sort_keys=True).encode())


def call_due_ms(now_ms: int, timeout_ms: int) -> int:
    """When an attempt being called is ownerless, if no answer was committed by then."""
    return now_ms + timeout_ms + limits.topup_answer_grace_ms


def query_due_ms(now_ms: int, queries: int) -> int:
    return now_ms + min(limits.topup_query_delay_ms_max,
                        limits.topup_query_delay_ms_min * 2 ** min(queries, 16))


def next_attempt(transaction, order_id: bytes, meta: dict, progress: dict,
                 fields: dict) -> list[dict]:
    """Record the order's next attempt on the best ranked route not yet tried -> [attempt],
    or, when none is left, mark `progress` (the order's topup or purchase record)
    FAILED_REFUND_REQUIRED -> []. `fields`: what the attempt's kind adds to its record. Top-ups
    and codes bought at payment (kamicore.domain.code_purchases) choose alike."""
    [(sku_id, _)] = meta["lines"]
    tried = {get(transaction, rid)["supplier_id"] for rid in progress["attempts"]}
    if len(progress["attempts"]) < limits.topup_attempts_per_order_max:
        for route in routing.ranked(transaction, sku_id, transaction.now_ms):
            if route.supplier_id in tried:
                continue
            supplier = suppliers.read(transaction, route.supplier_id)
            if supplier is None or not routing.claim(transaction, route.supplier_id):
                continue
            number = len(progress["attempts"]) + 1
            attempt = {
                **fields,
                "request_id": request_id_for(order_id, route.supplier_id, number),
                "order_id": order_id.decode(), "number": number, "sku_id": sku_id,
                "supplier_id": route.supplier_id, "product": route.product,
                "cost_micros": route.cost_micros, "currency": meta["currency"],
                "timeout_ms": supplier.timeout_ms, "state": CALLING,
                "created_ms": transaction.now_ms, "answered_ms": 0, "supplier_reference": "",
                "message": "", "queries": 0, "late": False, "callbacks": []}
            put_attempt(transaction, attempt, call_due_ms(transaction.now_ms, supplier.timeout_ms))
            progress["attempts"].append(attempt["request_id"])
            return [attempt]
    progress["state"] = FAILED_REFUND_REQUIRED
    events.emit_order(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, order_id, meta,
                      detail="refund_required")
    bookings.failed_after_payment(transaction, order_id, meta)
    return []


def _next_attempt(transaction, order_id: bytes, meta: dict) -> list[dict]:
    topup = meta["topup"]
    return next_attempt(transaction, order_id, meta, topup, {
        "recipient": meta["recipient"], "amount_micros": topup["amount_micros"]})


def pay(transaction, order_id: bytes, meta: dict, reference: str):
    """A top-up order's payment landed (the shared rungs of the ConfirmPayment ladder passed in
    kamicore.domain.orders) -> (status, attempts to call now). A retry with the same reference
    answers the order's state and calls nothing."""
    topup = meta["topup"]
    if meta["payment_reference"]:
        return ORDER_STATUS[topup["state"]], []
    meta["payment_reference"] = reference
    meta["paid_ms"] = transaction.now_ms
    bookings.sale(transaction, order_id, meta)
    drop_hold(transaction, order_id, meta)
    topup["state"] = ORDER_PENDING
    calls = _next_attempt(transaction, order_id, meta)
    return ORDER_STATUS[topup["state"]], calls


def settle(transaction, request_id: str, result: str, supplier_reference: str, message: str,
           latency_ms: int, supplier_id: str = "", follow_up_ms: int = 0,
           signature: str = ""):
    """An answer about attempt `request_id` (a call's, a query's or a callback's) -> (what it
    did: APPLIED, LATE, DUPLICATE, CONFLICT or UNKNOWN_REQUEST, the attempts to call now).
    supplier_id: the supplier that answered; a callback must name its own attempt.
    signature: a callback's, remembered to tell a replay from a new duplicate."""
    assert result in ANSWERS, result
    attempt = get(transaction, request_id)
    if attempt is None or supplier_id and attempt["supplier_id"] != supplier_id \
            or attempt.get("kind") == "purchase":  # kamicore.domain.code_purchases' own
        return UNKNOWN_REQUEST, []
    now = transaction.now_ms
    state = attempt["state"]
    if latency_ms < 0:  # a callback: since the attempt was recorded
        latency_ms = max(0, now - attempt["created_ms"])
    if signature:
        if signature in attempt["callbacks"]:
            return REPLAYED, []
        attempt["callbacks"] = (attempt["callbacks"] + [signature])[
            -limits.topup_callbacks_remembered_max:]
    if state in SETTLED:
        outcome = (DUPLICATE if result == state or result in (PENDING, UNKNOWN)
                   else LATE if result == SUCCEEDED else CONFLICT)
        if outcome == LATE and attempt["late"]:
            outcome = DUPLICATE
        if outcome == LATE:  # succeeded after all, once the order had gone on without it
            attempt.update(state=SUCCEEDED, late=True, answered_ms=now,
                           supplier_reference=_reference(supplier_reference))
            order_key = attempt["order_id"].encode()
            meta = json.loads(transaction.get(META_TABLE, order_key))
            meta["topup"]["reconcile"].append(request_id)
            bookings.supplier_late(transaction, attempt, meta["currency"], attempt["cost_micros"])
            transaction.put(META_TABLE, order_key, json.dumps(meta, sort_keys=True).encode())
            routing.record_outcome(transaction, attempt["supplier_id"], attempt["sku_id"],
                                   SUCCEEDED, latency_ms, attempt["cost_micros"], late=True)
            events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, attempt,
                                "late_success")
        elif outcome == CONFLICT:
            events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, attempt,
                                f"conflict_{result.lower()}")
        if signature or outcome == LATE:
            put_attempt(transaction, attempt, None)
        return outcome, []
    if result in (PENDING, UNKNOWN):
        if result == UNKNOWN:
            routing.record_outcome(transaction, attempt["supplier_id"], attempt["sku_id"],
                                   UNKNOWN, latency_ms)
        outcome = DUPLICATE if signature and state == PENDING else APPLIED
        if outcome == APPLIED:
            attempt["state"] = PENDING if PENDING in (state, result) else UNKNOWN
        due = (attempt["due_ms"] if outcome == DUPLICATE
               else now + follow_up_ms if result == PENDING and follow_up_ms
               else query_due_ms(now, attempt["queries"]))
        attempt["supplier_reference"] = (_reference(supplier_reference)
                                         or attempt["supplier_reference"])
        put_attempt(transaction, attempt, due)
        return outcome, []
    # a definite answer: SUCCEEDED, FAILED or NOT_FOUND
    order_key = attempt["order_id"].encode()
    meta = json.loads(transaction.get(META_TABLE, order_key))
    topup = meta["topup"]
    late = result == SUCCEEDED and topup["state"] != ORDER_PENDING
    attempt.update(state=result, answered_ms=now, late=late,
                   supplier_reference=_reference(supplier_reference),
                   message=_cut(message, limits.supplier_message_bytes_max))
    put_attempt(transaction, attempt, None)
    routing.record_outcome(transaction, attempt["supplier_id"], attempt["sku_id"], result,
                           latency_ms, attempt["cost_micros"] if result == SUCCEEDED else 0,
                           late=late)
    calls = []
    if late:
        topup["reconcile"].append(request_id)
        events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FLAGGED, attempt,
                            "late_success")
        bookings.supplier_late(transaction, attempt, meta["currency"], attempt["cost_micros"])
    elif result == SUCCEEDED:
        topup["state"], topup["fulfilled_by"] = FULFILLED, request_id
        bookings.topup_cost(transaction, order_key, meta, attempt)
        events.emit_order(transaction, events.ORDER_DELIVERED, order_key, meta,
                          supplier_id=attempt["supplier_id"], request_id=request_id)
    else:
        events.emit_attempt(transaction, events.SUPPLIER_ATTEMPT_FAILED, attempt, result.lower())
    if result != SUCCEEDED and topup["state"] == ORDER_PENDING \
            and topup["attempts"][-1] == request_id:
        calls = _next_attempt(transaction, order_key, meta)  # fail over
    transaction.put(META_TABLE, order_key, json.dumps(meta, sort_keys=True).encode())
    return (LATE if late else APPLIED), calls


def take_due(transaction, states: tuple[str, ...], limit: int) -> list[dict]:
    """Up to `limit` unsettled attempts in `states` whose due time passed, each leased for its
    call's timeout and a grace (due again then, should its taker die before an answer is
    committed) -> the attempts to ask their suppliers about."""
    now = transaction.now_ms
    taken, start = [], b""
    while len(taken) < limit:
        page = transaction.scan(UNSETTLED_TABLE, start, limits.topup_due_scan_max)
        for key, _ in page:
            if int.from_bytes(key[:8], "big") > now:
                return taken
            attempt = get(transaction, key[8:].decode())
            if attempt["state"] in states:
                attempt["queries"] += 1
                put_attempt(transaction, attempt, call_due_ms(now, attempt["timeout_ms"]))
                taken.append(attempt)
                if len(taken) >= limit:
                    return taken
        if len(page) < limits.topup_due_scan_max:
            return taken
        start = page[-1][0] + b"\0"
    return taken


def attempts_of(view, meta: dict) -> list[dict]:
    """A top-up order's attempts, in order (for GetOrder)."""
    return [get(view, rid) for rid in meta["topup"]["attempts"]] if is_topup(meta) else []
