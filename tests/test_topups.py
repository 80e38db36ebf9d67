"""Direct top-up orders and their attempts, in process over a real data file: what CreateOrder
asks of a top-up, the attempt recorded before its call, one row per kind of answer, failover
only on a definite failure, late successes flagged, callbacks that change nothing; and a model
test (Hypothesis): whatever the sequence of answers, callbacks and crashes, at most one success
fulfils an order, and a refund-required order had only definite failures. (Over a real server
and a simulated supplier: tests/test_e2e_topups.py.)"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kamicore.domain import order_requests, orders, topups
from kamicore.domain.order_requests import OrderRequest, validate_create
from kamicore.engine import Engine, InvalidArgument
from kamicore.statuses import CancelOrderStatus, ConfirmPaymentStatus as P, CreateOrderStatus

from .support import FakeClock
from .suppliers_support import SKU, register, route, supplier, topup_sku

SUPPLIERS = ("s-a", "s-b", "s-c")  # tried in this order (priority)
PRICE = 10_000_000
_keys = itertools.count()


class Shop:
    """A top-up SKU served by three suppliers, and the plans a worker would run."""

    def __init__(self, path):
        self.clock = FakeClock()
        self.engine = Engine(path, clock=self.clock)
        topup_sku(self.engine)
        register(self.engine, *(supplier(name, route(priority=index))
                                for index, name in enumerate(SUPPLIERS)))
        self.orders = orders.Orders(self.engine)

    def run(self, function, *args):
        return self.engine.run(self.engine.plan(function, args, "test", full=lambda: None))

    def create(self, recipient="+8613800000000", lines=((SKU, 1),)):
        key = f"k{next(_keys)}"
        request = validate_create(OrderRequest(key, "alice", "", "", list(lines), 0,
                                               recipient=recipient), 900)
        order_id = order_requests.order_id_for("storefront:web", key)
        status, _, _ = self.run(orders.create_order, order_id.encode(), "storefront:web",
                                "web", request, self.orders.risk)
        return status, order_id

    def pay(self, order_id, reference=None):
        """-> (status, attempts to call now)"""
        status, _, calls = self.run(orders.confirm_payment, order_id.encode(),
                                    reference or f"pay-{order_id}", "CNY", PRICE)
        return status, calls

    def answer(self, request_id, result, supplier_id="", signature=""):
        return self.run(topups.settle, request_id, result, "ref-" + result, "", 5,
                        supplier_id, 30_000, signature)

    def meta(self, order_id):
        return self.orders.meta(order_id)

    def attempts(self, order_id):
        return self.orders.attempts(self.meta(order_id))

    def state(self, order_id):
        return self.meta(order_id)["topup"]["state"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    opened = Shop(tmp_path_factory.mktemp("topups") / "data")
    yield opened
    opened.engine.close()


@pytest.fixture(autouse=True)
def _breakers_cool_down(shop):
    """Failures of one test never leave a supplier's breaker open for the next."""
    shop.clock.advance(3600_000)


def test_create_order_asks_a_top_up_for_one_line_and_a_recipient(shop):
    status, order_id = shop.create()
    assert status == CreateOrderStatus.CREATED
    assert shop.meta(order_id)["recipient"] == "+8613800000000"
    with pytest.raises(InvalidArgument, match="^recipient: is required"):
        shop.create(recipient="")
    with pytest.raises(InvalidArgument, match=r"^lines\[0\]\.quantity: "):
        shop.create(lines=((SKU, 2),))
    with pytest.raises(InvalidArgument, match="^lines: a top-up order has exactly one line"):
        shop.create(lines=((SKU, 1), (SKU, 1)))
    with pytest.raises(InvalidArgument, match="^recipient: "):
        validate_create(OrderRequest("k", "alice", "", "", [(SKU, 1)], 0,
                                     recipient="x" * 129), 900)


def test_a_top_up_sku_no_route_serves_is_not_deliverable(shop):
    topup_sku(shop.engine, "topup-orphan")
    status, _ = shop.create(lines=(("topup-orphan", 1),))
    assert status == CreateOrderStatus.DELIVERY_NOT_SUPPORTED


def test_payment_records_the_first_attempt_before_any_call(shop):
    _, order_id = shop.create()
    status, [call] = shop.pay(order_id)
    assert status == P.PENDING
    [stored] = shop.attempts(order_id)
    assert stored["request_id"] == call["request_id"] == topups.request_id_for(
        order_id.encode(), "s-a", 1)
    assert (stored["supplier_id"], stored["state"], stored["number"]) == ("s-a", "CALLING", 1)
    assert stored["due_ms"] > shop.clock.now_ms  # in the index of unsettled attempts
    # a retry with the same reference answers the state and records nothing more
    assert shop.pay(order_id) == (P.PENDING, [])
    assert shop.pay(order_id, "another-payment") == (P.ALREADY_PAID, [])
    assert len(shop.attempts(order_id)) == 1


ANSWERS = [  # answer of the first supplier -> the order's state, suppliers tried, their states
    ("SUCCEEDED", "FULFILLED", ["SUCCEEDED"]),
    ("PENDING", "PENDING", ["PENDING"]),
    ("UNKNOWN", "PENDING", ["UNKNOWN"]),  # a timeout is asked about, never failed over
    ("FAILED", "PENDING", ["FAILED", "CALLING"]),  # a definite failure: the next supplier
    ("NOT_FOUND", "PENDING", ["NOT_FOUND", "CALLING"]),
]


@pytest.mark.parametrize("answer, state, attempt_states", ANSWERS,
                         ids=[row[0] for row in ANSWERS])
def test_each_answer_of_a_supplier(shop, answer, state, attempt_states):
    _, order_id = shop.create()
    _, [call] = shop.pay(order_id)
    outcome, calls = shop.answer(call["request_id"], answer)
    assert outcome == topups.APPLIED
    assert shop.state(order_id) == state
    attempts = shop.attempts(order_id)
    assert [attempt["state"] for attempt in attempts] == attempt_states
    assert [attempt["supplier_id"] for attempt in attempts] == list(SUPPLIERS[:len(attempts)])
    assert [attempt["request_id"] for attempt in calls] == [a["request_id"]
                                                            for a in attempts[1:]]


def test_every_supplier_failing_definitely_makes_the_order_refund_required(shop):
    _, order_id = shop.create()
    _, [call] = shop.pay(order_id)
    for answer in ("FAILED", "NOT_FOUND", "FAILED"):
        _, calls = shop.answer(call["request_id"], answer)
        call = calls[0] if calls else None
    assert call is None
    assert shop.state(order_id) == "FAILED_REFUND_REQUIRED"
    assert shop.pay(order_id) == (P.FAILED_REFUND_REQUIRED, [])


def test_a_late_success_after_a_failover_is_flagged_never_a_second_fulfilment(shop):
    _, order_id = shop.create()
    _, [first] = shop.pay(order_id)
    _, [second] = shop.answer(first["request_id"], "FAILED")
    assert shop.answer(second["request_id"], "SUCCEEDED") == (topups.APPLIED, [])
    assert shop.answer(first["request_id"], "SUCCEEDED", signature="aa") == (topups.LATE, [])
    meta = shop.meta(order_id)
    assert meta["topup"]["state"] == "FULFILLED"
    assert meta["topup"]["fulfilled_by"] == second["request_id"]
    assert meta["topup"]["reconcile"] == [first["request_id"]]
    assert [(a["state"], a["late"]) for a in shop.attempts(order_id)] == [
        ("SUCCEEDED", True), ("SUCCEEDED", False)]
    assert shop.answer(first["request_id"], "SUCCEEDED", signature="bb")[0] == topups.DUPLICATE
    assert shop.meta(order_id)["topup"]["reconcile"] == [first["request_id"]]


def test_answers_that_change_nothing(shop):
    _, order_id = shop.create()
    _, [call] = shop.pay(order_id)
    rid = call["request_id"]
    assert shop.answer("tu-nosuchattempt-1", "SUCCEEDED")[0] == topups.UNKNOWN_REQUEST
    assert shop.answer(rid, "SUCCEEDED", supplier_id="s-b")[0] == topups.UNKNOWN_REQUEST
    assert shop.state(order_id) == "PENDING"
    assert shop.answer(rid, "SUCCEEDED", supplier_id="s-a", signature="c1")[0] == topups.APPLIED
    before = shop.attempts(order_id)
    assert shop.answer(rid, "SUCCEEDED", supplier_id="s-a", signature="c1")[0] == \
        topups.REPLAYED
    assert shop.answer(rid, "SUCCEEDED", supplier_id="s-a", signature="c2")[0] == \
        topups.DUPLICATE
    assert shop.answer(rid, "FAILED", supplier_id="s-a", signature="c3")[0] == topups.CONFLICT
    after = shop.attempts(order_id)
    assert [(a["state"], a["answered_ms"]) for a in after] == [
        (a["state"], a["answered_ms"]) for a in before]
    assert shop.state(order_id) == "FULFILLED" and len(after) == 1


def test_unsettled_attempts_are_taken_once_due_and_leased(shop):
    _, order_id = shop.create()
    _, [call] = shop.pay(order_id)
    shop.answer(call["request_id"], "UNKNOWN")
    states = (topups.CALLING, topups.UNKNOWN)
    assert call["request_id"] not in [a["request_id"] for a in shop.run(
        topups.take_due, states, 1000)]
    shop.clock.advance(limits_query_delay_ms_max())
    taken = [a["request_id"] for a in shop.run(topups.take_due, states, 1000)]
    assert call["request_id"] in taken
    assert call["request_id"] not in [a["request_id"] for a in shop.run(
        topups.take_due, states, 1000)]  # leased: another taker does not ask it at once


def test_a_cancelled_top_up_is_not_topped_up(shop):
    _, order_id = shop.create()
    assert shop.run(orders.cancel, order_id.encode()) == CancelOrderStatus.CANCELLED
    assert shop.pay(order_id) == (P.REFUND_REQUIRED, [])
    assert shop.attempts(order_id) == []


def held_units(shop) -> int:
    """The units alice's open or paid top-up orders hold against purchase limits, once every
    earlier test's lapsed order was swept."""
    shop.run(orders.sweep, 1000)
    value = shop.engine.get("purchases", f"storefront:web\0alice\0{SKU}".encode())
    return int(value) if value is not None else 0


def test_an_unpaid_top_up_lapses_gives_its_units_back_and_may_still_be_paid(shop):
    held = held_units(shop)
    _, order_id = shop.create()
    assert held_units(shop) == held + 1
    shop.clock.advance(900_000 + 1)
    assert held_units(shop) == held and shop.meta(order_id)["expired_ms"]
    status, late, calls = shop.run(orders.confirm_payment, order_id.encode(),
                                   f"pay-{order_id}", "CNY", PRICE)
    assert (status, late, len(calls)) == (P.PENDING, True, 1)
    assert held_units(shop) == held + 1  # paid for: counted again
    shop.clock.advance(900_000 + 1)
    assert held_units(shop) == held + 1  # a paid order's hold never lapses


def test_a_cancelled_top_up_gives_its_units_back_once(shop):
    held = held_units(shop)
    _, order_id = shop.create()
    for _ in range(2):
        assert shop.run(orders.cancel, order_id.encode()) == CancelOrderStatus.CANCELLED
    assert held_units(shop) == held
    shop.clock.advance(900_000 + 1)
    assert held_units(shop) == held and not shop.meta(order_id).get("expired_ms")


def limits_query_delay_ms_max() -> int:
    from kamicore import limits
    return limits.topup_query_delay_ms_max + 1


# -- the model: any sequence of answers, callbacks and crashes ----------------------------------

EVENTS = st.lists(st.tuples(
    st.sampled_from(("call", "callback", "crash")),  # an answer to a call, a callback, a crash
    st.integers(0, 2),  # which attempt of the order it is about
    st.sampled_from(topups.ANSWERS)), min_size=1, max_size=14)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(events=EVENTS)
def test_whatever_the_answers_at_most_one_success_fulfils_and_refunds_had_only_failures(
        shop, events):
    shop.clock.advance(3600_000)
    _, order_id = shop.create()
    status, calls = shop.pay(order_id)
    fulfilled_before_failures = []
    for source, which, answer in events:
        attempts = shop.attempts(order_id)
        if which >= len(attempts):
            continue
        rid = attempts[which]["request_id"]
        if source == "crash":  # the process died: whoever takes it next asks the supplier
            shop.clock.advance(120_000)
            shop.run(topups.take_due, topups.UNSETTLED, 1000)
            continue
        if source == "callback" and answer in ("NOT_FOUND", "UNKNOWN"):
            continue  # a callback carries SUCCEEDED, FAILED or PENDING only
        before = shop.state(order_id)
        shop.answer(rid, answer, signature=f"sig-{len(fulfilled_before_failures)}"
                    if source == "callback" else "")
        fulfilled_before_failures.append((before, shop.state(order_id)))
    meta = shop.meta(order_id)
    attempts = shop.attempts(order_id)
    fulfilling = [a for a in attempts if a["state"] == "SUCCEEDED" and not a["late"]]
    assert len(fulfilling) <= 1
    assert (meta["topup"]["state"] == "FULFILLED") == bool(fulfilling)
    if fulfilling:
        assert meta["topup"]["fulfilled_by"] == fulfilling[0]["request_id"]
    assert sorted(meta["topup"]["reconcile"]) == sorted(
        a["request_id"] for a in attempts if a["late"])
    # never two attempts in flight: a next attempt only after a definite failure
    for earlier in attempts[:-1]:
        assert earlier["state"] in ("FAILED", "NOT_FOUND") or earlier["late"], attempts
    assert len({a["supplier_id"] for a in attempts}) == len(attempts)
    if meta["topup"]["state"] == "FAILED_REFUND_REQUIRED":
        assert len(attempts) == len(SUPPLIERS)
        assert all(a["state"] in ("FAILED", "NOT_FOUND") or a["late"] for a in attempts)
    # once an order is settled it stays settled the same way
    for before, after in fulfilled_before_failures:
        if before != "PENDING":
            assert after == before
    assert json.dumps(meta)  # (the record stays JSON)
