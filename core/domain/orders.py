"""Orders as storefronts and partners see them: idempotency keys, buyers, channel prices,
per-account purchase limits, payment references and amounts.

Each write here is a plan run by the engine's writer, in the same transaction as the code
transitions it causes, so an order's bookkeeping and its codes commit together or not at all.
Bookkeeping lives in two tables: `order_meta` (order id -> JSON) and `purchases` (owner,
account, sku -> units held in open or paid orders). Every ladder checks in the precedence
order of its status enum (kamicore.ladders).
"""

from __future__ import annotations

import json

from .. import limits
from ..engine import Engine, InvalidArgument
from ..statuses import (
    CancelOrderStatus, ConfirmPaymentStatus, ConfirmStatus, CreateOrderStatus, DecideReviewStatus,
    DeliveryKind, OrderState, ReserveStatus,
)
from . import (
    catalog, code_purchases, events, ledger, refunds, replenishment, risk, risk_reviews,
    suppliers, topups,
)

META_TABLE = "order_meta"
PURCHASES_TABLE = "purchases"


def _per_sku(lines) -> dict[str, int]:
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        totals[sku] = totals.get(sku, 0) + quantity
    return totals


def _purchase_key(meta: dict, sku: str) -> bytes:
    return f"{meta['owner']}\0{meta['account']}\0{sku}".encode()


def _held_units(transaction, meta: dict, sku: str) -> int:
    value = transaction.get(PURCHASES_TABLE, _purchase_key(meta, sku))
    return int(value) if value is not None else 0


def _adjust_purchases(transaction, meta: dict, sign: int) -> None:
    for sku, quantity in _per_sku(meta["lines"]).items():
        held = max(0, _held_units(transaction, meta, sku) + sign * quantity)
        key = _purchase_key(meta, sku)
        if held:
            transaction.put(PURCHASES_TABLE, key, str(held).encode())
        else:
            transaction.delete(PURCHASES_TABLE, key)


def _put_meta(transaction, order_id: bytes, meta: dict) -> None:
    transaction.put(META_TABLE, order_id, json.dumps(meta, sort_keys=True).encode())


def _meta(transaction, order_id: bytes) -> dict | None:
    value = transaction.get(META_TABLE, order_id)
    return json.loads(value) if value is not None else None


def _buyer(owner: str, channel: str, request: dict) -> risk.Buyer:
    return risk.Buyer(owner, channel, request["account"], request["ip"], request["device"],
                      request["phone_bound"], request["account_created_ms"],
                      frozenset(request["verifications"]))


def _priced(transaction, channel: str, request: dict):
    """-> (status or None, skus, prices, currency) of an order's lines on a channel. A top-up
    SKU no enabled supplier route serves is not deliverable."""
    skus = {}
    lines = request["lines"]
    for sku_id, _ in lines:
        sku = catalog.read(transaction, sku_id)
        if sku is None:
            return CreateOrderStatus.SKU_NOT_FOUND, None, None, None
        skus[sku_id] = sku
    if topups.check_order(skus, request) and not suppliers.routes(transaction, lines[0][0]):
        return CreateOrderStatus.DELIVERY_NOT_SUPPORTED, None, None, None
    if code_purchases.check_order(skus, request) \
            and not suppliers.routes(transaction, lines[0][0]):  # nobody to buy them from
        return CreateOrderStatus.DELIVERY_NOT_SUPPORTED, None, None, None
    if any(sku.delivery_kind not in (DeliveryKind.CODE, DeliveryKind.DIRECT_TOPUP)
           for sku in skus.values()):
        return CreateOrderStatus.DELIVERY_NOT_SUPPORTED, None, None, None
    prices = {sku_id: sku.price_micros(channel) for sku_id, sku in skus.items()}
    if any(price is None for price in prices.values()):
        return CreateOrderStatus.NOT_SOLD_ON_CHANNEL, None, None, None
    currencies = {sku.currency for sku in skus.values()}
    if len(currencies) > 1:
        raise InvalidArgument("lines", "SKUs priced in different currencies cannot share an "
                              "order")
    return None, skus, prices, currencies.pop()


def _risk_refusal(assessment: dict | None):
    """The CreateOrder status a risk assessment refuses the order with, or None (REVIEW
    reserves, see create_order)."""
    if assessment is None or assessment["passed"]:
        return None
    return {"REJECT": CreateOrderStatus.RISK_REJECTED,
            "CHALLENGE": CreateOrderStatus.CHALLENGE_REQUIRED}.get(assessment["decision"])


def dry_run(snapshot, scorer: risk.Risk, owner: str, channel: str, request: dict):
    """-> (status, assessment): the order scored on a read snapshot; nothing is written.
    SCORED when scoring would let it through (stock and purchase limits are not checked)."""
    status, _, prices, _ = _priced(snapshot, channel, request)
    if status is not None:
        return status, None
    assessment = scorer.assess(snapshot, _buyer(owner, channel, request),
                               _per_sku(request["lines"]),
                               sum(prices[sku] * quantity for sku, quantity in request["lines"]))
    return _risk_refusal(assessment) or CreateOrderStatus.SCORED, assessment


def create_order(transaction, order_id: bytes, owner: str, channel: str, request: dict,
                 scorer: risk.Risk):
    """-> (status, meta or None, risk assessment or None). Ladder in CreateOrderStatus
    order; the order is scored before anything is reserved."""
    fingerprint = [request["account"], request["ip"], request["device"], request["lines"],
                   request["hold_ms"], *([request["recipient"]] if request["recipient"] else [])]
    existing = _meta(transaction, order_id)
    if existing is not None:
        same = existing["fingerprint"] == json.loads(json.dumps(fingerprint))
        if not same:
            return CreateOrderStatus.IDEMPOTENCY_CONFLICT, None, None
        return (CreateOrderStatus.IN_REVIEW if existing.get("review") else
                CreateOrderStatus.CREATED), existing, existing.get("risk")
    status, skus, prices, currency = _priced(transaction, channel, request)
    if status is not None:
        return status, None, None
    meta = {"owner": owner, "channel": channel, "account": request["account"],
            "ip": request["ip"], "device": request["device"], "lines": request["lines"],
            "hold_ms": request["hold_ms"], "fingerprint": fingerprint,
            "currency": currency, "payment_reference": "",
            "created_ms": transaction.now_ms, "prices": prices,
            "total_micros": sum(prices[sku] * quantity for sku, quantity in request["lines"])}
    units = _per_sku(request["lines"])
    buyer = _buyer(owner, channel, request)
    assessment = scorer.assess(transaction, buyer, units, meta["total_micros"])
    refusal = _risk_refusal(assessment)
    if refusal is not None:
        return refusal, None, assessment
    for sku_id, quantity in units.items():
        limit = skus[sku_id].purchase_limit_per_account
        if limit and _held_units(transaction, meta, sku_id) + quantity > limit:
            return CreateOrderStatus.LIMIT_EXCEEDED, None, assessment
    if request["recipient"]:  # a top-up: nothing to reserve, a supplier credits it once paid
        topups.new_order(transaction, order_id, meta, skus, request)
    elif code_purchases.check_order(skus, request):  # no pool: bought once paid
        code_purchases.new_order(meta)
    elif transaction.reserve(order_id, [(sku.encode(), quantity)
                                        for sku, quantity in request["lines"]],
                             request["hold_ms"]) != ReserveStatus.RESERVED:
        return CreateOrderStatus.INSUFFICIENT_STOCK, None, assessment
    replenishment.after_reserve(transaction, skus)  # in this commit: one request per SKU
    status = CreateOrderStatus.CREATED
    if assessment is not None:
        scorer.record(transaction, buyer, units)
        meta["risk"] = assessment
        if assessment["decision"] == "REVIEW":
            meta["review"] = True
            risk_reviews.open_review(transaction, order_id, assessment,
                                     transaction.now_ms + request["hold_ms"])
            status = CreateOrderStatus.IN_REVIEW
    _adjust_purchases(transaction, meta, +1)
    _put_meta(transaction, order_id, meta)
    events.emit_order(transaction, events.ORDER_CREATED, order_id, meta)
    if status == CreateOrderStatus.IN_REVIEW:
        events.emit_order(transaction, events.REVIEW_NEEDED, order_id, meta)
    return status, meta, assessment


def confirm_payment(transaction, order_id: bytes, reference: str, currency: str,
                    amount_micros: int, provider: str = ledger.DEFAULT_PROVIDER):
    """-> (status, late, top-up attempts to call now). Ladder in ConfirmPaymentStatus order;
    a top-up order (kamicore.domain.topups) answers FULFILLED, PENDING or
    FAILED_REFUND_REQUIRED past the shared rungs, and a retry its current state."""
    meta = _meta(transaction, order_id)
    if meta is None:
        return ConfirmPaymentStatus.ORDER_NOT_FOUND, False, []
    paid = (topups.ORDER_STATUS.get(meta["topup"]["state"]) if topups.is_topup(meta)
            else code_purchases.ORDER_STATUS.get(meta["purchase"]["state"])
            if code_purchases.is_purchase(meta) else ConfirmPaymentStatus.PAID)
    if meta["payment_reference"]:
        return ((paid if meta["payment_reference"] == reference
                 else ConfirmPaymentStatus.ALREADY_PAID), False, [])
    if reference in meta.get("payment_refunds", ()):  # a retry gets its first answer
        return ConfirmPaymentStatus.REFUND_REQUIRED, False, []
    if meta.get("review"):  # paid only once a person approved it
        state = risk_reviews.get(transaction, order_id)["state"]
        if state in (risk_reviews.REJECTED, risk_reviews.EXPIRED):
            return ConfirmPaymentStatus.RISK_REJECTED, False, []
        if state == risk_reviews.PENDING:
            return ConfirmPaymentStatus.IN_REVIEW, False, []
    if currency != meta["currency"] or amount_micros != meta["total_micros"]:
        return ConfirmPaymentStatus.AMOUNT_MISMATCH, False, []
    supplied = (topups if topups.is_topup(meta) else
                code_purchases if code_purchases.is_purchase(meta) else None)
    if supplied is not None:  # topped up, or its codes bought, now (the same attempt path)
        if meta.get("cancelled_ms"):
            return refunds.refund_required(transaction, order_id, meta, reference, provider)
        meta["provider"] = provider
        status, calls = supplied.pay(transaction, order_id, meta, reference)
        events.emit_order(transaction, events.ORDER_PAID, order_id, meta)
        late = bool(meta.get("expired_ms"))  # only top-up orders have a hold that lapses
        if late:  # its hold lapsed: its units were given back; paid for, so counted again
            _adjust_purchases(transaction, meta, +1)
        _put_meta(transaction, order_id, meta)
        return status, late, calls
    status, late = transaction.confirm(order_id)
    if status != ConfirmStatus.SOLD:
        return refunds.refund_required(transaction, order_id, meta, reference, provider)
    if late:  # its release had given the units back; paid for, so counted even past a limit
        _adjust_purchases(transaction, meta, +1)
    meta["payment_reference"] = reference
    meta["paid_ms"] = transaction.now_ms
    refunds.paid(transaction, order_id, meta, provider)
    _put_meta(transaction, order_id, meta)
    events.emit_order(transaction, events.ORDER_PAID, order_id, meta)
    events.emit_order(transaction, events.ORDER_DELIVERED, order_id, meta)
    return ConfirmPaymentStatus.PAID, late, []


def _drop_topup(transaction, order_id: bytes, meta: dict) -> None:
    """An unpaid top-up or bought-code order cancelled or rejected: its units back (unless
    its hold lapsed, which gave them back; bought-code orders have no hold)."""
    meta["cancelled_ms"] = transaction.now_ms
    if not meta.get("expired_ms"):
        _adjust_purchases(transaction, meta, -1)
    if topups.is_topup(meta):
        topups.drop_hold(transaction, order_id, meta)
    _put_meta(transaction, order_id, meta)


def cancel(transaction, order_id: bytes) -> CancelOrderStatus:
    meta = _meta(transaction, order_id)
    if meta is None:
        return CancelOrderStatus.ORDER_NOT_FOUND
    if topups.is_topup(meta) or code_purchases.is_purchase(meta):
        # nothing reserved: the order is marked, its units given back
        if meta["payment_reference"]:
            return refunds.cancel_paid(transaction, order_id, meta)
        if not meta.get("cancelled_ms"):
            _drop_topup(transaction, order_id, meta)
            events.emit_order(transaction, events.ORDER_RELEASED, order_id, meta,
                              detail="cancelled")
            if meta.get("review"):
                risk_reviews.expire(transaction, order_id)
        return CancelOrderStatus.CANCELLED
    state = transaction.order_state(order_id)
    if state == OrderState.PAID:
        return refunds.cancel_paid(transaction, order_id, meta)
    if state == OrderState.RESERVED:
        transaction.release(order_id)
        _adjust_purchases(transaction, meta, -1)
        events.emit_order(transaction, events.ORDER_RELEASED, order_id, meta,
                          detail="cancelled")
    if meta.get("review"):
        risk_reviews.expire(transaction, order_id)
    return CancelOrderStatus.CANCELLED


def decide_review(transaction, order_id: bytes, approve: bool, by: str):
    """-> (status, review or None). Ladder in DecideReviewStatus order. A rejected order's
    codes go back to stock and its units to its buyer's limits."""
    review = risk_reviews.get(transaction, order_id)
    if review is None:
        return DecideReviewStatus.NOT_FOUND, None
    if review["state"] == risk_reviews.PENDING and transaction.now_ms >= review["expires_ms"]:
        review = risk_reviews.close(transaction, order_id, review, risk_reviews.EXPIRED)
    wanted = risk_reviews.APPROVED if approve else risk_reviews.REJECTED
    if review["state"] == risk_reviews.EXPIRED:
        return DecideReviewStatus.EXPIRED, review
    if review["state"] != risk_reviews.PENDING:
        return ((DecideReviewStatus.DECIDED if review["state"] == wanted
                 else DecideReviewStatus.ALREADY_DECIDED), review)
    meta = _meta(transaction, order_id)
    if not approve and topups.is_topup(meta) and not meta.get("cancelled_ms"):
        _drop_topup(transaction, order_id, meta)
        events.emit_order(transaction, events.ORDER_RELEASED, order_id, meta, detail="rejected")
    elif not approve and transaction.order_state(order_id) == OrderState.RESERVED:
        transaction.release(order_id)
        _adjust_purchases(transaction, meta, -1)
        events.emit_order(transaction, events.ORDER_RELEASED, order_id, meta, detail="rejected")
    return DecideReviewStatus.DECIDED, risk_reviews.close(transaction, order_id, review, wanted,
                                                          by)


def sweep(transaction, limit: int) -> list[bytes]:
    """Give expired holds back to stock, and their units back to their buyers' limits."""
    due = transaction.expire_holds(limit) + topups.expire_holds(transaction, limit)
    for order_id in due:
        meta = _meta(transaction, order_id)
        if meta is not None:
            _adjust_purchases(transaction, meta, -1)
            events.emit_order(transaction, events.ORDER_EXPIRED, order_id, meta)
            if meta.get("review"):  # undecided reviews expire with their hold
                risk_reviews.expire(transaction, order_id)
    return due


def _reveal(transaction, order_id: bytes) -> bool:
    refunds.reveal(transaction, order_id)
    return True


class Orders:
    """The order writes and reads of one engine, for the servicer and the sweeper."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.risk = risk.Risk(engine.keys.lookup_key)

    async def create(self, order_id: str, owner: str, channel: str, request: dict, actor: str):
        """-> (status, meta or None, risk assessment or None)."""
        return await self.engine.run_async(self.engine.plan(
            create_order, (order_id.encode(), owner, channel, request, self.risk), actor,
            full=lambda: (CreateOrderStatus.STORAGE_FULL, None, None)))

    def dry_run(self, owner: str, channel: str, request: dict):
        """-> (status, assessment) without ordering, read without waiting for the writer."""
        return dry_run(risk.Snapshot(self.engine), self.risk, owner, channel, request)

    async def decide_review(self, order_id: str, approve: bool, actor: str):
        """-> (status, review or None)."""
        return await self.engine.run_async(self.engine.plan(
            decide_review, (order_id.encode(), approve, actor), actor,
            full=lambda: (DecideReviewStatus.STORAGE_FULL, None)))

    async def cancel(self, order_id: str, actor: str) -> CancelOrderStatus:
        return await self.engine.run_async(self.engine.plan(
            cancel, (order_id.encode(),), actor, full=lambda: CancelOrderStatus.STORAGE_FULL))

    async def audit_reveal(self, order_id: str, actor: str) -> bool:
        """Record that the order's codes are shown to its buyer; False when the data file is
        full (then nothing may be shown: every reveal is audited first)."""
        return await self.engine.run_async(self.engine.plan(
            _reveal, (order_id.encode(),), actor, full=lambda: False))

    def sweep(self, limit: int = limits.holds_per_sweep_max) -> int:
        """Return every expired hold to stock, `limit` orders per commit; how many expired.
        Then one pass over the risk counters drops those whose window is over."""
        self.engine.run(self.engine.plan(risk.prune, (limits.risk_counters_per_sweep_max,),
                                         "sweeper", full=int))
        total = 0
        while True:
            due = self.engine.run(self.engine.plan(sweep, (limit,), "sweeper", full=list))
            total += len(due)
            if len(due) < limit:
                return total

    def meta(self, order_id: str) -> dict | None:
        value = self.engine.get(META_TABLE, order_id.encode())
        return json.loads(value) if value is not None else None

    def attempts(self, meta: dict) -> list[dict]:
        """A top-up order's attempts, read without waiting for the writer."""
        return topups.attempts_of(self.engine, meta)
