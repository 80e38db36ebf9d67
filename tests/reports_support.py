"""A small book of known figures for the report and reconciliation tests.

Orders, their ledger entries and supplier attempts are written directly (a plan per day), so
the figures do not depend on which transitions book what; stock and redemptions go through the
engine's own import, sale and redeem. `seed` returns the days and times the tests name."""

from __future__ import annotations

import json

from kamicore.domain import ledger, routing, topups
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
from kamicore.domain.suppliers import Route, Supplier, Suppliers
from kamicore.statuses import (
    ConfirmStatus, CreateSkuStatus, DeliveryKind, RedeemStatus, RegisterSupplierStatus,
)

DAY_MS = 86_400_000
M = 1_000_000  # micros in one unit

SETTLEMENT_CSV = (
    "payment_reference,amount,currency,time\n"
    "pay-A,190.00,CNY,{t0}\n"  # MATCHED
    "pay-B,97.50,CNY,{t0}\n"  # AMOUNT_MISMATCH: 98.00 was booked
    "pay-X,10.00,CNY,{t0}\n"  # MISSING_IN_KAMICORE
    "pay-A,190,CNY,{t1}\n"  # DUPLICATE_PAYMENT
    "\n"
    "pay-D,10.000000,USD,{t1}\n"  # MATCHED
)  # pay-C, booked on day 1, is not in the file: MISSING_IN_FILE
EXPECTED_LINES = [  # (status, file line, reference, order, file micros, booked micros)
    ("MATCHED", 2, "pay-A", "o-A", 190 * M, 190 * M),
    ("AMOUNT_MISMATCH", 3, "pay-B", "o-B", 97_500_000, 98 * M),
    ("MISSING_IN_KAMICORE", 4, "pay-X", "", 10 * M, 0),
    ("DUPLICATE_PAYMENT", 5, "pay-A", "o-A", 190 * M, 190 * M),
    ("MATCHED", 7, "pay-D", "o-D", 10 * M, 10 * M),
    ("MISSING_IN_FILE", 0, "pay-C", "o-C", 0, 95 * M),
]

SALES = [  # (day index, sku, channel, currency, orders, quantity, price, cost, margin)
    (0, "gift-100", "app", "CNY", 1, 1, 98 * M, 80 * M, 18 * M),
    (0, "gift-100", "web", "CNY", 1, 2, 190 * M, 160 * M, 30 * M),
    (1, "gift-100", "web", "CNY", 1, 1, 95 * M, 70 * M, 25 * M),
    (1, "gift-usd", "web", "USD", 1, 1, 10 * M, 8 * M, 2 * M),
]
STATEMENT = [  # supplier, currency, units, cost, voided, late, owed, claims
    ("S-1", "CNY", 3, 240 * M, 80 * M, 50 * M, 210 * M, 0),
    ("S-1", "USD", 1, 8 * M, 0, 0, 8 * M, 0),
    ("S-2", "CNY", 1, 70 * M, 0, 0, 70 * M, 70 * M),
]
FLAGGED = [("S-2", "tu-pending", "unsettled"), ("S-1", "tu-late", "late")]
RISK = [("", "ALLOW", 1), ("", "CHALLENGE", 1), ("", "REVIEW", 1),
        ("big_amount", "REVIEW", 1), ("new_account", "CHALLENGE", 1),
        ("new_account", "REVIEW", 1)]


def _order(transaction, order_id, channel, sku, quantity, currency, unit_price, cost,
           reference, risk, supplier, batch):
    total = unit_price * quantity
    meta = {"owner": f"storefront:{channel}", "channel": channel, "account": "a",
            "ip": "", "device": "", "lines": [[sku, quantity]], "currency": currency,
            "payment_reference": reference, "created_ms": transaction.now_ms,
            "paid_ms": transaction.now_ms, "total_micros": total,
            "prices": {sku: unit_price}, "costs": {sku: cost}}
    if risk is not None:
        decision, fired = risk
        meta["risk"] = {"decision": decision, "score": 0, "version": 0, "passed": True,
                        "verifications": [], "fired": [{"name": name, "weight": 1,
                                                        "decision": decision}
                                                       for name in fired]}
    transaction.put("order_meta", order_id.encode(), json.dumps(meta).encode())
    ledger.post(transaction, "sale", currency, [("receivable:default", total),
                                                (f"revenue:{channel}", -total)],
                order_id=order_id, channel=channel, payment_reference=reference,
                provider="default")
    ledger.post(transaction, "cost", currency, [(f"cogs:{supplier}", cost),
                                                (f"payable:{supplier}", -cost)],
                order_id=order_id, sku=sku, supplier=supplier, batch=batch,
                quantity=quantity)


def _attempt(transaction, request_id, supplier, state, late):
    attempt = {"request_id": request_id, "order_id": "o-T", "sku_id": "topup-50",
               "supplier_id": supplier, "currency": "CNY", "cost_micros": 50 * M,
               "created_ms": transaction.now_ms, "state": state, "late": late}
    due_ms = transaction.now_ms + 60_000 if state in topups.UNSETTLED else None
    topups.put_attempt(transaction, attempt, due_ms)


def _day_one(transaction):
    _order(transaction, "o-A", "web", "gift-100", 2, "CNY", 95 * M, 160 * M, "pay-A",
           ("ALLOW", []), "S-1", "b1")
    _order(transaction, "o-B", "app", "gift-100", 1, "CNY", 98 * M, 80 * M, "pay-B",
           ("CHALLENGE", ["new_account"]), "S-1", "b1")
    for request_id, supplier, state, late in (("tu-late", "S-1", "SUCCEEDED", True),
                                              ("tu-pending", "S-2", "PENDING", False),
                                              ("tu-ok", "S-1", "SUCCEEDED", False)):
        _attempt(transaction, request_id, supplier, state, late)


def _day_two(transaction):
    _order(transaction, "o-C", "web", "gift-100", 1, "CNY", 95 * M, 70 * M, "pay-C",
           ("REVIEW", ["new_account", "big_amount"]), "S-2", "b2")
    _order(transaction, "o-D", "web", "gift-usd", 1, "USD", 10 * M, 8 * M, "pay-D", None,
           "S-1", "u1")
    ledger.post(transaction, "void", "CNY", [("payable:S-1", 80 * M), ("cogs:S-1", -80 * M)],
                order_id="o-A", supplier="S-1", batch="b1", quantity=1)
    ledger.post(transaction, "reissue", "CNY", [("supplier_claims:S-2", 70 * M),
                                                ("cogs:S-2", -70 * M)],
                order_id="o-C", supplier="S-2", batch="b2", quantity=1)
    ledger.post(transaction, "supplier_late", "CNY", [("late_costs:S-1", 50 * M),
                                                      ("payable:S-1", -50 * M)],
                order_id="o-T", sku="topup-50", supplier="S-1", request_id="tu-late")


def _stock(engine, clock, now_ms):
    sku = Sku("gift-100", "Gift card 100", "CNY", 100 * M, DeliveryKind.CODE,
              (ChannelPrice("web", 95 * M),))
    assert Catalog(engine).create(sku, "test")[0] == CreateSkuStatus.CREATED
    engine.import_codes("gift-100", "b1", ["SOON-0001", "SOON-0002", "SOON-0003"],
                        supplier="S-1", unit_cost_micros=80 * M,
                        valid_until_ms=now_ms + 3 * DAY_MS)
    engine.import_codes("gift-100", "b2", ["LATE-0001", "LATE-0002"], supplier="S-2",
                        unit_cost_micros=70 * M, valid_until_ms=now_ms + 30 * DAY_MS)
    [reserved] = engine.reserve([("stock-order", [("gift-100", 1)], 60)])
    [confirmed] = engine.confirm(["stock-order"])
    assert confirmed.status == ConfirmStatus.SOLD
    sold = engine.code(confirmed.code_ids[0])
    assert sold.batch == "b1"
    plain = engine.order("stock-order", reveal=True).plaintexts[0]
    assert engine.redeem([(plain, "r-1")], "T-9")[0].status == RedeemStatus.REDEEMED
    [leak] = engine.redeem([("LATE-0002", "r-2")], "T-8")
    assert leak.status == RedeemStatus.NOT_SOLD


def _supplier_outcomes(transaction):
    for result in ("SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED"):
        routing.record_outcome(transaction, "S-1", "gift-100", result, 120, 80 * M)


def _supplier(engine):
    """S-1 with a route for gift-100 and 3 successes in 4 calls (the success-rate chart)."""
    supplier = Supplier("S-1", "Supplier one", "grpc", "127.0.0.1:9", 1000, True,
                        b"reports-secret-0123456789", (Route("gift-100", "S-1", "G100", 80 * M,
                                                             "CNY", 1, True),))
    assert Suppliers(engine).register(supplier, "test")[0] == RegisterSupplierStatus.REGISTERED
    engine.run(engine.plan(_supplier_outcomes, (), "test", full=lambda: None))


STOCK = [  # sku, batch, supplier, available, sellable, unit cost, value
    ("gift-100", "b1", "S-1", 2, 2, 80 * M, 160 * M),
    ("gift-100", "b2", "S-2", 1, 1, 70 * M, 70 * M),
]
REDEMPTIONS = [("T-8", "gift-100", 0, 1), ("T-9", "gift-100", 1, 0)]


def seed(engine, clock) -> dict:
    """The book above: day 0 and day 1 (UTC) from the clock's day -> {"t0", "t1", "days",
    "csv"}. The clock is a tests.support.FakeClock; it ends on day 1."""
    start = clock.now_ms - clock.now_ms % DAY_MS
    clock.now_ms = start + 3_600_000
    t0 = clock.now_ms
    engine.run(engine.plan(_day_one, (), "test", full=lambda: None))
    _stock(engine, clock, t0)
    _supplier(engine)
    clock.now_ms = start + DAY_MS + 3_600_000
    t1 = clock.now_ms
    engine.run(engine.plan(_day_two, (), "test", full=lambda: None))
    return {"t0": t0, "t1": t1, "start": start, "end": start + 2 * DAY_MS,
            "csv": SETTLEMENT_CSV.format(t0=t0, t1=t1).encode()}
