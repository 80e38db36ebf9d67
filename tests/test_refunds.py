"""Refunds, reissues and the ledger entries they book, in process over real data files: one
row per CancelOrder outcome of a paid pool order, per ReportInvalidCode outcome, a payment for
an order that can no longer be sold, top-ups (done, failed everywhere, late), codes bought at
payment (voided while unseen, kept once revealed), and the `kamicore ledger` commands."""

from __future__ import annotations

import json

import pytest

from kamicore.cli import main
from kamicore.domain import ledger, orders
from kamicore.statuses import (
    CancelOrderStatus as C, CodeState, ConfirmPaymentStatus as P, CreateOrderStatus,
    ReportInvalidStatus as R,
)

from . import test_code_purchases as purchases
from . import test_topups as topups_test
from .ledger_support import PRICE, STOCK, Shop, unit_cost, whole_books
from .test_code_purchases import supplier  # noqa: F401 (the simulated supplier fixture)


@pytest.fixture
def shop(tmp_path):
    opened = Shop(tmp_path / "data")
    yield opened
    opened.close()


def booked(engine, order_id: str) -> list[tuple[str, dict]]:
    """(kind, {account: amount}) of the order's entries, in order."""
    return [(entry["kind"], dict(entry["postings"]))
            for entry in ledger.entries(engine) if entry["order_id"] == order_id]


def corrections(engine, order_id: str) -> list[tuple[str, str]]:
    """(kind, kind of the entry it corrects) of the order's corrections; a corrected cost is
    of the same SKU and batch."""
    found = []
    for entry in ledger.entries(engine):
        if entry["order_id"] == order_id and entry["kind"] in ("refund", "void", "reissue"):
            corrected = ledger.entry(engine, entry["corrects"])
            assert corrected["order_id"] == order_id
            if corrected["kind"] == "cost":
                assert (corrected["sku"], corrected["batch"]) == (entry["sku"], entry["batch"])
            found.append((entry["kind"], corrected["kind"]))
    return found


def _report_first(shop, key: str, leave_in_stock: int):
    """Sell the rest of the stock but `leave_in_stock`, then report the order's first code."""
    rest = STOCK - 2 - leave_in_stock
    if rest:
        assert shop.create("rest", rest) == CreateOrderStatus.CREATED
    first = shop.codes(key)[0]
    return first, shop.report(key, first.code_id)


# -- CancelOrder of a paid pool order: one row per outcome -----------------------------------------

@pytest.mark.parametrize("invalid, in_stock, cancelled, refunded_codes", [
    (False, 1, C.ALREADY_PAID, 0),  # seen at payment, valid: not refundable
    (True, 1, C.ALREADY_PAID, 0),  # reported invalid and replaced: nothing to refund
    (True, 0, C.REFUNDED, 1),  # reported invalid, no replacement: its price refunded
])
def test_cancel_after_payment(shop, invalid, in_stock, cancelled, refunded_codes):
    assert shop.create("k", 2) == CreateOrderStatus.CREATED
    assert shop.pay("k", 2) == P.PAID
    if invalid:
        _report_first(shop, "k", in_stock)
    before = booked(shop.engine, "shop/k")
    assert shop.cancel("k") == cancelled
    assert shop.cancel("k") == cancelled  # a retry: the same answer, booked once
    refunds = booked(shop.engine, "shop/k")[len(before):]
    assert refunds == ([("refund", {"refunds:web": PRICE * refunded_codes,
                                    "refunds_due:default": -PRICE * refunded_codes})]
                       if refunded_codes else [])
    assert [code.state for code in shop.codes("k")].count(CodeState.VOID) == 0
    assert corrections(shop.engine, "shop/k") == (
        [("reissue", "cost")] if invalid else []) + [("refund", "sale")] * bool(refunded_codes)
    assert shop.meta("k").get("refunded_micros", 0) == PRICE * refunded_codes
    whole_books(shop.engine)


def test_a_sale_books_the_price_and_each_batchs_cost(shop):
    assert shop.create("k", 3) == CreateOrderStatus.CREATED
    assert shop.pay("k", 3, provider="stripe") == P.PAID
    assert shop.pay("k", 3, provider="stripe") == P.PAID  # a retry books nothing
    assert booked(shop.engine, "shop/k") == [
        ("sale", {"receivable:stripe": 3 * PRICE, "revenue:web": -3 * PRICE}),
        ("cost", {"cogs:acme": 3 * unit_cost("early"), "payable:acme": -3 * unit_cost("early")}),
    ]
    [line] = ledger.order_lines(shop.meta("k"))
    assert (line["price_micros"], line["cost_micros"], line["margin_micros"]) == (
        3 * PRICE, 3 * unit_cost("early"), 3 * (PRICE - unit_cost("early")))
    assert [entry["kind"] for entry in ledger.by_reference(shop.engine, "pay-k")] == ["sale"]


@pytest.mark.parametrize("in_stock, status, entries", [
    # replaced by a code of the "late" batch (no supplier): the invalid code's cost is charged
    # to acme, the replacement's is a cost like any delivered code's
    (1, R.REISSUED, [("reissue", {"supplier_claims:acme": unit_cost("early"),
                                  "cogs:acme": -unit_cost("early")}),
                     ("cost", {"cogs:unassigned": unit_cost("late"),
                               "payable:unassigned": -unit_cost("late")})]),
    (0, R.NO_REPLACEMENT, [("reissue", {"supplier_claims:acme": unit_cost("early"),
                                        "cogs:acme": -unit_cost("early")})]),
])
def test_report_invalid(shop, in_stock, status, entries):
    assert shop.create("k", 2) == CreateOrderStatus.CREATED and shop.pay("k", 2) == P.PAID
    before = len(booked(shop.engine, "shop/k"))
    first, (answered, replacement) = _report_first(shop, "k", in_stock)
    assert answered == status and bool(replacement) == (status == R.REISSUED)
    assert shop.report("k", first.code_id) == (answered, replacement)  # a retry
    assert booked(shop.engine, "shop/k")[before:] == entries
    assert corrections(shop.engine, "shop/k") == [("reissue", "cost")]
    whole_books(shop.engine)


def test_a_payment_for_an_order_that_cannot_be_sold_is_owed_back_once(shop):
    assert shop.create("k", 2) == CreateOrderStatus.CREATED
    assert shop.cancel("k") == C.CANCELLED
    assert shop.create("all", STOCK) == CreateOrderStatus.CREATED  # nothing left to refill
    for _ in range(2):
        assert shop.pay("k", 2, provider="alipay") == P.REFUND_REQUIRED
    assert booked(shop.engine, "shop/k") == [
        ("payment_refund", {"receivable:alipay": 2 * PRICE, "refunds_due:alipay": -2 * PRICE})]
    assert shop.cancel("all") == C.CANCELLED  # stock again: the same payment stays refused
    assert shop.pay("k", 2, provider="alipay") == P.REFUND_REQUIRED
    assert len(booked(shop.engine, "shop/k")) == 1
    assert shop.pay("k", 2, "pay-2") == P.PAID  # a new payment sells it
    whole_books(shop.engine)


def test_an_entry_that_does_not_balance_is_never_written(shop):
    def unbalanced(transaction):
        ledger.post(transaction, "sale", "USD", [("receivable:default", 5),
                                                 ("revenue:web", -4)])
    with pytest.raises(AssertionError, match="unbalanced"):
        shop.run(unbalanced)
    assert ledger.entries(shop.engine) == []


# -- top-ups ---------------------------------------------------------------------------------------

@pytest.fixture
def topup_shop(tmp_path):
    opened = topups_test.Shop(tmp_path / "data")
    yield opened
    opened.engine.close()


def test_a_top_up_books_its_routes_cost_on_success_and_a_late_success_apart(topup_shop):
    _, order_id = topup_shop.create()
    _, [first] = topup_shop.pay(order_id)
    _, [second] = topup_shop.answer(first["request_id"], "FAILED")
    topup_shop.answer(second["request_id"], "SUCCEEDED")
    topup_shop.answer(first["request_id"], "SUCCEEDED", signature="aa")  # late
    cost = second["cost_micros"]
    assert booked(topup_shop.engine, order_id) == [
        ("sale", {"receivable:default": topups_test.PRICE, "revenue:web": -topups_test.PRICE}),
        ("cost", {"cogs:s-b": cost, "payable:s-b": -cost}),
        ("supplier_late", {"late_costs:s-a": first["cost_micros"],
                           "payable:s-a": -first["cost_micros"]}),
    ]
    assert topup_shop.run(orders.cancel, order_id.encode()) == C.ALREADY_PAID
    whole_books(topup_shop.engine)


def test_a_top_up_failed_everywhere_is_refunded_when_it_fails(topup_shop):
    _, order_id = topup_shop.create()
    _, [call] = topup_shop.pay(order_id)
    while call is not None:
        _, calls = topup_shop.answer(call["request_id"], "FAILED")
        call = calls[0] if calls else None
    price = topups_test.PRICE
    assert booked(topup_shop.engine, order_id) == [
        ("sale", {"receivable:default": price, "revenue:web": -price}),
        ("refund", {"refunds:web": price, "refunds_due:default": -price})]
    assert topup_shop.run(orders.cancel, order_id.encode()) == C.REFUNDED
    assert len(booked(topup_shop.engine, order_id)) == 2
    whole_books(topup_shop.engine)


# -- codes bought at payment ---------------------------------------------------------------------

@pytest.fixture
def purchase_shop(tmp_path, clock, supplier):  # noqa: F811
    supplier.reset()
    supplier.configure(currency="USD", unit_cost_micros=8_000_000)
    opened = purchases.Shop(tmp_path / "data", clock, supplier)
    opened.route("S-1")
    yield opened
    opened.engine.close()


@pytest.mark.parametrize("revealed, cancelled", [(False, C.REFUNDED), (True, C.ALREADY_PAID)])
def test_bought_codes_are_voided_and_refunded_only_while_unseen(purchase_shop, revealed,
                                                                cancelled):
    shop = purchase_shop
    _, order_id = shop.order(2)
    assert shop.pay(order_id) == P.PAID
    if revealed:  # GetDelivery, or ConfirmPayment answering PAID: an audited reveal
        assert shop.engine.run(shop.engine.plan(orders._reveal, (order_id.encode(),), "test",
                                                full=lambda: False))
    assert shop.engine.run(shop.engine.plan(orders.cancel, (order_id.encode(),), "test",
                                            full=lambda: None)) == cancelled
    cost, price = 2 * 8_000_000, 2 * purchases.PRICE
    expected = [("sale", {"receivable:default": price, "revenue:web": -price}),
                ("cost", {"cogs:S-1": cost, "payable:S-1": -cost})]
    if not revealed:
        expected += [("void", {"payable:S-1": cost, "cogs:S-1": -cost}),
                     ("refund", {"refunds:web": price, "refunds_due:default": -price})]
    assert booked(shop.engine, order_id) == expected
    states = {code.state for code in shop.engine.order(order_id).codes}
    assert states == {CodeState.VOID if not revealed else CodeState.SOLD}
    assert corrections(shop.engine, order_id) == (
        [] if revealed else [("void", "cost"), ("refund", "sale")])
    whole_books(shop.engine)


def test_bought_codes_priced_in_another_currency_are_never_delivered(purchase_shop):
    purchase_shop.supplier.configure(currency="EUR", unit_cost_micros=8_000_000)
    _, order_id = purchase_shop.order(1)
    assert purchase_shop.pay(order_id, 1) == P.FAILED_REFUND_REQUIRED  # one route, unusable
    price = purchase_shop.orders.meta(order_id)["total_micros"]
    assert booked(purchase_shop.engine, order_id) == [  # never a EUR cost in USD books
        ("sale", {"receivable:default": price, "revenue:web": -price}),
        ("refund", {"refunds:web": price, "refunds_due:default": -price})]
    whole_books(purchase_shop.engine)


# -- the command line ----------------------------------------------------------------------------

def test_kamicore_ledger_balances_and_entries(tmp_path, capsys):
    shop = Shop(tmp_path / "data")
    assert shop.create("k", 1) == CreateOrderStatus.CREATED and shop.pay("k", 1) == P.PAID
    shop.close()
    data = ["--data-dir", str(tmp_path / "data")]
    assert main([*data, "ledger", "balances", "--currency", "USD"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["account"]: row["balance_micros"] for row in rows} == {
        "receivable:default": PRICE, "revenue:web": -PRICE,
        "cogs:acme": unit_cost("early"), "payable:acme": -unit_cost("early")}
    assert main([*data, "ledger", "entries", "--after-id", "1"]) == 0
    [entry] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (entry["id"], entry["kind"], entry["batch"]) == (2, "cost", "early")
    assert main([*data, "ledger", "entries", "--reference", "pay-k"]) == 0
    assert [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()] == ["sale"]
    assert main([*data, "ledger", "entries", "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err

