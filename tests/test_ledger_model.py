"""Model-based test of the books: Hypothesis creates, pays (again, or with another payment
reference), cancels (before and after payment), reports codes invalid, redeems them, lets
holds expire and folds the balances (the sweeper's roll-up); a small model predicts every
answer. After every step the books are whole (every entry balances, every currency sums to
zero, the balances equal the entries) and equal the codes' states: revenue is the paid
orders' totals, refunds the prices of the invalid codes without a replacement that a cancel
refunded, cost of goods the unit costs of the codes delivered (SOLD or REDEEMED), supplier
claims those of the INVALID ones, payables both, and every order's margin its price less the
cost of its delivered codes."""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kamicore.domain import ledger
from kamicore.statuses import (
    CancelOrderStatus as C, CodeState, ConfirmPaymentStatus as P, CreateOrderStatus as S,
    RedeemStatus, ReportInvalidStatus as R,
)

from .ledger_support import HOLD_SECONDS, PRICE, STOCK, Shop, costs_by_state, whole_books

KEYS = [f"k{number}" for number in range(6)]


class Books(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="kamicore-ledger-")
        self.shop = Shop(self.directory)
        self.available = STOCK  # sellable codes, as the model counts them
        self.orders: dict[str, dict] = {}  # key -> quantity, state, its codes' states
        self.payments_refunded = 0  # REFUND_REQUIRED payments, each booked once
        self.refused_references: set[str] = set()
        self.refunded_codes: set[int] = set()
        self.redeemed = 0

    def teardown(self):
        self.shop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _paid(self) -> list[str]:
        return [key for key, order in self.orders.items() if order["state"] == "paid"]

    @rule(key=st.sampled_from(KEYS), quantity=st.integers(1, 3))
    def create(self, key, quantity):
        status = self.shop.create(key, quantity)
        if key in self.orders:
            assert status in (S.CREATED, S.IDEMPOTENCY_CONFLICT)
        elif quantity > self.available:
            assert status == S.INSUFFICIENT_STOCK
        else:
            assert status == S.CREATED
            self.available -= quantity
            self.orders[key] = {"quantity": quantity, "state": "open", "codes": {},
                                "unreplaced": set(), "refunded": False}

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), other_reference=st.booleans())
    def pay(self, data, other_reference):
        key = data.draw(st.sampled_from(sorted(self.orders)))
        order = self.orders[key]
        reference = f"{'other' if other_reference else 'pay'}-{key}"
        status = self.shop.pay(key, order["quantity"], reference)
        if order["state"] == "paid":
            assert status == (P.PAID if reference == order["reference"] else P.ALREADY_PAID)
        elif reference in self.refused_references or (
                order["state"] == "released" and order["quantity"] > self.available):
            assert status == P.REFUND_REQUIRED  # received, owed back (once per reference)
            if reference not in self.refused_references:
                self.refused_references.add(reference)
                self.payments_refunded += PRICE * order["quantity"]
        else:
            assert status == P.PAID
            if order["state"] == "released":  # cancelled or lapsed: filled again from stock
                self.available -= order["quantity"]
            order.update(state="paid", reference=reference)
            order["codes"] = {code.code_id: CodeState.SOLD for code in self.shop.codes(key)}

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel(self, data):
        key = data.draw(st.sampled_from(sorted(self.orders)))
        order = self.orders[key]
        status = self.shop.cancel(key)
        if order["state"] != "paid":
            assert status == C.CANCELLED
            if order["state"] == "open":
                self.available += order["quantity"]
            order["state"] = "released"
            return
        refundable = order["unreplaced"] - self.refunded_codes
        self.refunded_codes |= refundable
        order["refunded"] = order["refunded"] or bool(refundable)
        assert status == (C.REFUNDED if order["refunded"] else C.ALREADY_PAID)

    @precondition(lambda self: any(order["state"] == "paid" for order in self.orders.values()))
    @rule(data=st.data())
    def report_invalid(self, data):
        key = data.draw(st.sampled_from(self._paid()))
        order = self.orders[key]
        code_id = data.draw(st.sampled_from(sorted(order["codes"])))
        status, replacement = self.shop.report(key, code_id)
        state = order["codes"][code_id]
        if state == CodeState.REDEEMED:
            assert status == R.NOT_SOLD
        elif state == CodeState.INVALID:  # a retry: the first answer
            assert status == (R.NO_REPLACEMENT if code_id in order["unreplaced"] else R.REISSUED)
        elif self.available:
            assert status == R.REISSUED and replacement
            self.available -= 1
            order["codes"][code_id] = CodeState.INVALID
            order["codes"][replacement] = CodeState.SOLD
        else:
            assert status == R.NO_REPLACEMENT and not replacement
            order["codes"][code_id] = CodeState.INVALID
            order["unreplaced"].add(code_id)

    @precondition(lambda self: any(order["state"] == "paid" for order in self.orders.values()))
    @rule(data=st.data())
    def redeem(self, data):
        key = data.draw(st.sampled_from(self._paid()))
        order = self.orders[key]
        sold = sorted(code_id for code_id, state in order["codes"].items()
                      if state == CodeState.SOLD)
        if not sold:
            return
        code_id = data.draw(st.sampled_from(sold))
        view = self.shop.engine.order(f"shop/{key}", reveal=True)
        plaintext = view.plaintexts[view.code_ids.index(code_id)]
        self.redeemed += 1
        [result] = self.shop.engine.redeem([(plaintext, f"r{self.redeemed}")], "T-1")
        assert result.status == RedeemStatus.REDEEMED
        order["codes"][code_id] = CodeState.REDEEMED

    @rule()
    def expire(self):
        self.shop.clock.advance(HOLD_SECONDS * 1000 + 1)
        self.shop.orders.sweep()
        for order in self.orders.values():
            if order["state"] == "open":
                order["state"] = "released"
                self.available += order["quantity"]

    @rule()
    def roll_up(self):  # the sweeper folds the entries into the stored balances
        ledger.roll_up_all(self.shop.engine)

    @invariant()
    def books_equal_the_codes(self):
        balances = whole_books(self.shop.engine)
        paid = self._paid()
        sold = PRICE * sum(self.orders[key]["quantity"] for key in paid)
        refunded = PRICE * len(self.refunded_codes)
        codes = [code for key in paid for code in self.shop.codes(key)]
        assert {code.code_id: code.state for code in codes} == {
            code_id: state for key in paid for code_id, state in self.orders[key]["codes"].items()}
        expected = {("revenue:web", "USD"): -sold,
                    ("receivable:default", "USD"): sold + self.payments_refunded,
                    ("refunds:web", "USD"): refunded,
                    ("refunds_due:default", "USD"): -(refunded + self.payments_refunded),
                    **costs_by_state(codes)}
        for (name, currency), amount in costs_by_state(codes).items():
            supplier = name.partition(":")[2]
            key = (f"payable:{supplier}", currency)
            expected[key] = expected.get(key, 0) - amount
        assert balances == {key: amount for key, amount in expected.items() if amount}
        for key in paid:
            [line] = ledger.order_lines(self.shop.meta(key))
            cost = sum(amount for (name, _), amount in costs_by_state(self.shop.codes(key)).items()
                       if name.startswith("cogs:"))
            assert (line["price_micros"], line["cost_micros"], line["margin_micros"]) == (
                PRICE * self.orders[key]["quantity"], cost,
                PRICE * self.orders[key]["quantity"] - cost)


TestBooks = Books.TestCase
TestBooks.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
