"""What each order transition books in the ledger (kamicore.domain.ledger), called by the plan
function of that transition, in its commit. docs/ledger.md has the table of kinds and postings.

Every amount is in the order's currency: a batch's unit cost and a route's cost are in the
SKU's currency, and an order's SKUs share one. The order's meta keeps what the books need
later: each SKU's unit price at order time (`prices`), each SKU's cost of the codes or top-up
delivered (`costs`), the payment provider (`provider`), what was refunded (`refunded_micros`,
`refunded_codes`), which payments were given back (`payment_refunds`) and the ids of its
entries (`ledger_entries`, what corrections name in `corrects`). Callers write the
meta they pass (these functions change it in place).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..statuses import CodeState
from . import ledger
from .ledger import account


def provider_of(meta: dict) -> str:
    return meta.get("provider") or ledger.DEFAULT_PROVIDER


def unit_prices(meta: dict) -> dict[str, int]:
    """sku -> its unit price in this order (orders made before prices were kept: derived)."""
    return {row["sku"]: row["unit_price_micros"] for row in ledger.order_lines(meta)}


def post(transaction, meta: dict, items: list[tuple]) -> list[int]:
    """ledger.post_many, the ids kept in the order's `ledger_entries` (what its corrections
    name)."""
    ids = ledger.post_many(transaction, items)
    meta.setdefault("ledger_entries", []).extend(entry_id for entry_id in ids if entry_id)
    return ids


def _corrected(transaction, meta: dict, kind: str, **match) -> int:
    """The id of the order's first entry of `kind` with the fields of `match`, or 0 (orders
    from before the ledger have none). Read only for corrections, never on the payment path."""
    for entry_id in meta.get("ledger_entries", ()):
        found = ledger.entry(transaction, entry_id)
        if found["kind"] == kind and all(found[name] == value for name, value in match.items()):
            return entry_id
    return 0


def _order_fields(order_id: bytes, meta: dict) -> dict:
    return {"order_id": order_id.decode(), "channel": meta["channel"],
            "payment_reference": meta["payment_reference"], "provider": provider_of(meta)}


def sale_entry(order_id: bytes, meta: dict) -> tuple:
    """Payment confirmed: the order's total, receivable from its provider, earned by its
    channel (an entry for ledger.post_many)."""
    amount = meta["total_micros"]
    return ("sale", meta["currency"], [(account("receivable", provider_of(meta)), amount),
                                       (account("revenue", meta["channel"]), -amount)],
            _order_fields(order_id, meta))


def sale(transaction, order_id: bytes, meta: dict) -> int:
    return post(transaction, meta, [sale_entry(order_id, meta)])[0]


def payment_refund(transaction, order_id: bytes, meta: dict, reference: str,
                   provider: str) -> int:
    """A payment of the order's total that cannot be sold (ConfirmPayment REFUND_REQUIRED):
    received and owed back, once per payment reference."""
    given_back = meta.setdefault("payment_refunds", [])
    if reference in given_back:
        return 0
    given_back.append(reference)
    amount = meta["total_micros"]
    provider = provider or ledger.DEFAULT_PROVIDER
    return post(transaction, meta, [(
        "payment_refund", meta["currency"], [(account("receivable", provider), amount),
                                             (account("refunds_due", provider), -amount)],
        {"order_id": order_id.decode(), "channel": meta["channel"],
         "payment_reference": reference, "provider": provider})])[0]


def refund(transaction, order_id: bytes, meta: dict, amount: int, sku: str = "",
           quantity: int = 0) -> int:
    """`amount` of the order's sale refunded: owed back to the buyer through its provider."""
    meta["refunded_micros"] = meta.get("refunded_micros", 0) + amount
    meta.setdefault("refunded_ms", transaction.now_ms)
    return post(transaction, meta, [(
        "refund", meta["currency"], [(account("refunds", meta["channel"]), amount),
                                     (account("refunds_due", provider_of(meta)), -amount)],
        {"sku": sku, "quantity": quantity, "corrects": _corrected(transaction, meta, "sale"),
         **_order_fields(order_id, meta)})])[0]


def _by_batch(codes: Iterable) -> dict[tuple[str, str, str], list]:
    groups: dict[tuple[str, str, str], list] = {}
    for code in codes:
        groups.setdefault((code.sku, code.supplier, code.batch), []).append(code)
    return groups


def _cost_entries(kind: str, order_id: bytes, meta: dict, codes: Iterable, debit: str,
                  credit: str, sign: int, transaction=None) -> list[tuple]:
    """One entry per SKU, supplier and batch of `codes`: debit `debit:<supplier>`, credit
    `credit:<supplier>` with their unit costs; meta's costs move by sign x the amount. With
    `transaction` (a correction), each names the cost entry of its SKU and batch."""
    entries = []
    costs = meta.setdefault("costs", {})
    for (sku, supplier, batch), group in _by_batch(codes).items():
        amount = sum([code.unit_cost_micros for code in group])
        costs[sku] = costs.get(sku, 0) + sign * amount
        entries.append((kind, meta["currency"], [(account(debit, supplier), amount),
                                                 (account(credit, supplier), -amount)],
                        {"order_id": order_id.decode(), "sku": sku, "channel": meta["channel"],
                         "supplier": supplier or ledger.UNASSIGNED, "batch": batch,
                         "quantity": len(group),
                         "corrects": 0 if transaction is None else _corrected(
                             transaction, meta, "cost", sku=sku, batch=batch)}))
    return entries


def codes_delivered(transaction, order_id: bytes, meta: dict, codes: Iterable) -> None:
    """Codes sold to the order (at payment, bought for it, or a replacement): their batches'
    unit costs, payable to their suppliers."""
    post(transaction, meta, _cost_entries("cost", order_id, meta, codes, "cogs", "payable",
                                           +1))


def delivered_entries(transaction, order_id: bytes, meta: dict) -> list[tuple]:
    """The cost of every code of a just-confirmed order (pool codes at payment, bought codes
    in the commit that imports them), as entries for ledger.post_many."""
    return _cost_entries("cost", order_id, meta, transaction.order_codes(order_id), "cogs",
                         "payable", +1)


def codes_voided(transaction, order_id: bytes, meta: dict, codes: Iterable) -> None:
    """Codes voided before their buyer saw them: their cost taken back from the supplier."""
    post(transaction, meta, _cost_entries("void", order_id, meta, codes, "payable", "cogs",
                                           -1, transaction))


def code_claimed(transaction, order_id: bytes, meta: dict, code) -> None:
    """A code reported invalid: its cost charged back to the supplier of its batch."""
    post(transaction, meta, _cost_entries("reissue", order_id, meta, [code],
                                           "supplier_claims", "cogs", -1, transaction))


def topup_cost(transaction, order_id: bytes, meta: dict, attempt: dict) -> int:
    """A top-up done by `attempt`: the route's cost, payable to its supplier."""
    [(sku, quantity)] = meta["lines"]
    amount = attempt["cost_micros"] * quantity
    meta.setdefault("costs", {})[sku] = amount
    supplier = attempt["supplier_id"]
    return post(transaction, meta, [(
        "cost", meta["currency"], [(account("cogs", supplier), amount),
                                   (account("payable", supplier), -amount)],
        {"order_id": order_id.decode(), "sku": sku, "channel": meta["channel"],
         "supplier": supplier, "quantity": quantity, "request_id": attempt["request_id"]})])[0]


def supplier_late(transaction, attempt: dict, currency: str, amount: int) -> int:
    """A supplier's success that came after its order was fulfilled elsewhere or refunded:
    owed to the supplier, never sold (reconciliation lists it)."""
    supplier = attempt["supplier_id"]
    return ledger.post(transaction, "supplier_late", currency,
                       [(account("late_costs", supplier), amount),
                        (account("payable", supplier), -amount)],
                       order_id=attempt["order_id"], sku=attempt["sku_id"], supplier=supplier,
                       quantity=attempt.get("quantity", 1), request_id=attempt["request_id"])


def failed_after_payment(transaction, order_id: bytes, meta: dict) -> None:
    """A paid top-up or bought-code order failed at every supplier: its whole sale is owed
    back (FAILED_REFUND_REQUIRED), booked once."""
    if meta["payment_reference"] and not meta.get("refunded_ms"):
        refund(transaction, order_id, meta, meta["total_micros"])


def refundable_invalid(meta: dict, codes: Iterable) -> list:
    """Codes reported invalid that could not be replaced and are not refunded yet."""
    refunded = set(meta.get("refunded_codes", []))
    return [code for code in codes if code.state == CodeState.INVALID
            and not code.replaced_by and code.code_id not in refunded]


def refund_codes(transaction, order_id: bytes, meta: dict, codes: list) -> None:
    """Refund the prices of `codes`, one entry per SKU; each code refunded once."""
    prices = unit_prices(meta)
    per_sku: dict[str, int] = {}
    for code in codes:
        per_sku[code.sku] = per_sku.get(code.sku, 0) + 1
    for sku, quantity in per_sku.items():
        refund(transaction, order_id, meta, prices.get(sku, 0) * quantity, sku, quantity)
    meta.setdefault("refunded_codes", []).extend(code.code_id for code in codes)
