"""Risk reviews in process over a real data file: an order sent to review keeps its codes
reserved and cannot be paid until a person approves it; a rejection or an undecided expiry
gives its codes back. (Over a real server: tests/test_e2e_risk.py.)"""

from __future__ import annotations

import asyncio

import pytest

from kamicore.domain import orders as orders_domain
from kamicore.domain import risk_reviews
from kamicore.engine import InvalidArgument
from kamicore.statuses import (
    CancelOrderStatus, ConfirmPaymentStatus as P, CreateOrderStatus as S, DecideReviewStatus as D,
)

from .support import FakeClock
from .test_risk import PRICE, Shop

REVIEW_ALL = {"name": "look", "kind": "order_value", "min_micros": 0, "weight": 1,
              "decision": "REVIEW"}


@pytest.fixture
def shop(tmp_path):
    opened = Shop(tmp_path / "data", FakeClock())
    opened.rules(REVIEW_ALL)
    yield opened
    opened.engine.close()


def order_id(shop) -> str:
    return f"shop/k{shop.count}"


def pay(shop, order: str, units: int = 1):
    return shop.engine.run(shop.engine.plan(
        orders_domain.confirm_payment, (order.encode(), f"pay-{order}", "USD", units * PRICE),
        "storefront:web", full=lambda: (P.STORAGE_FULL, False)))[0]


def decide(shop, order: str, approve: bool):
    return asyncio.run(shop.orders.decide_review(order, approve, "admin:reviewer"))


def pending(shop) -> list[str]:
    return [order for order, _ in risk_reviews.pending_page(shop.engine, 0, "")[0]]


def test_an_order_in_review_holds_its_codes_and_is_paid_only_once_approved(shop):
    status, assessment = shop.order(lines=[("gift", 2)])
    order = order_id(shop)
    assert (status, assessment["decision"], assessment["score"]) == (S.IN_REVIEW, "REVIEW", 1)
    assert shop.reserved() == 2
    assert pay(shop, order, 2) == P.IN_REVIEW
    assert pending(shop) == [order]
    status, review = decide(shop, order, True)
    assert (status, review["state"], review["decided_by"]) == (D.DECIDED, "APPROVED",
                                                               "admin:reviewer")
    assert pending(shop) == []
    assert decide(shop, order, True)[0] == D.DECIDED  # a retry
    assert decide(shop, order, False)[0] == D.ALREADY_DECIDED
    assert pay(shop, order, 2) == P.PAID


def test_a_rejected_order_gives_its_codes_back_and_cannot_be_paid(shop):
    shop.order(lines=[("gift", 3)])
    order = order_id(shop)
    status, review = decide(shop, order, False)
    assert (status, review["state"]) == (D.DECIDED, "REJECTED")
    assert shop.reserved() == 0
    assert pay(shop, order, 3) == P.RISK_REJECTED
    assert decide(shop, order, True)[0] == D.ALREADY_DECIDED
    assert shop.reserved() == 0


def test_an_undecided_review_expires_with_its_hold(shop):
    shop.order()
    order = order_id(shop)
    shop.clock.advance(900_000 + 1)
    assert shop.orders.sweep() == 1
    assert shop.reserved() == 0
    assert pending(shop) == []
    status, review = decide(shop, order, True)
    assert (status, review["state"]) == (D.EXPIRED, "EXPIRED")
    assert pay(shop, order) == P.RISK_REJECTED  # no late refill past the reviewer


def test_a_decision_after_the_hold_lapsed_finds_it_expired_before_the_sweep(shop):
    shop.order()
    shop.clock.advance(900_000)
    assert decide(shop, order_id(shop), True)[0] == D.EXPIRED


def test_a_cancelled_order_leaves_the_queue(shop):
    shop.order()
    order = order_id(shop)
    status = shop.engine.run(shop.engine.plan(orders_domain.cancel, (order.encode(),), "t",
                                              full=lambda: CancelOrderStatus.STORAGE_FULL))
    assert status == CancelOrderStatus.CANCELLED
    assert pending(shop) == [] and shop.reserved() == 0
    assert decide(shop, order, True)[0] == D.EXPIRED


def test_the_review_score_sends_an_order_to_review(shop):
    shop.rules({"name": "big", "kind": "order_value", "min_micros": 2 * PRICE, "weight": 40},
               review_score=40)
    assert shop.order()[0] == S.CREATED
    status, assessment = shop.order(lines=[("gift", 2)])
    assert (status, assessment["decision"]) == (S.IN_REVIEW, "REVIEW")


def test_a_retry_of_an_order_in_review_answers_in_review_again(shop):
    shop.order()
    shop.count -= 1  # the same idempotency key
    status, assessment = shop.order()
    assert (status, assessment["decision"]) == (S.IN_REVIEW, "REVIEW")
    assert shop.reserved() == 1


def test_reviews_are_listed_oldest_first_in_pages(shop):
    orders = []
    for _ in range(5):
        shop.order()
        orders.append(order_id(shop))
        shop.clock.advance(1000)
    seen, token = [], ""
    while True:
        page, token = risk_reviews.pending_page(shop.engine, 2, token)
        seen += [order for order, _ in page]
        if not token:
            break
    assert seen == orders
    with pytest.raises(InvalidArgument) as raised:
        risk_reviews.pending_page(shop.engine, 0, "not hex")
    assert raised.value.field == "page_token"
    with pytest.raises(InvalidArgument) as raised:
        risk_reviews.pending_page(shop.engine, 101, "")
    assert raised.value.field == "page_size"


def test_an_unknown_review(shop):
    assert decide(shop, "shop/nope", True) == (D.NOT_FOUND, None)
