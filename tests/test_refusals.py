"""Refused requests in one worker (kamicore.grpc.refusals): each counted, at most one log line
per (method, reason) per interval, the next line saying how many were left out. Over a real
server: tests/test_e2e_fuzz.py."""

from __future__ import annotations

import logging

import pytest

from kamicore import auth, limits
from kamicore.grpc.refusals import INVALID_ARGUMENT, UNAUTHENTICATED, Refusals

GET_ORDER = "/kamicore.v1.Orders/GetOrder"
GET_SKU = "/kamicore.v1.Catalog/GetSku"
CALLER = auth.Principal("0123456789abcdef", "storefront", "web", "")


class Counted:
    def __init__(self):
        self.counts: dict[tuple[str, str], int] = {}

    def bad_request(self, method: str, reason: str) -> None:
        self.counts[method, reason] = self.counts.get((method, reason), 0) + 1


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refusals():
    clock = Clock()
    counted = Counted()
    return Refusals(counted, clock=clock), counted, clock


def test_each_refusal_is_counted_and_one_line_per_interval_is_logged(refusals, caplog):
    refusing, counted, clock = refusals
    caplog.set_level(logging.INFO, "kamicore")
    for _ in range(5):
        refusing.refused(GET_ORDER, INVALID_ARGUMENT, CALLER, "order_id: is required")
        refusing.refused(GET_ORDER, UNAUTHENTICATED, None, "a valid API key is required")
        refusing.refused(GET_SKU, INVALID_ARGUMENT, CALLER, "sku_id: is required")
    clock.now += limits.bad_request_log_interval_seconds - 1
    refusing.refused(GET_ORDER, INVALID_ARGUMENT, CALLER, "order_id: is required")
    assert counted.counts == {(GET_ORDER, INVALID_ARGUMENT): 6, (GET_ORDER, UNAUTHENTICATED): 5,
                              (GET_SKU, INVALID_ARGUMENT): 5}
    assert caplog.messages == [
        f"refused {GET_ORDER} from storefront key 0123456789abcdef: invalid_argument "
        "(order_id: is required)",
        f"refused {GET_ORDER} from a caller without a valid key: unauthenticated "
        "(a valid API key is required)",
        f"refused {GET_SKU} from storefront key 0123456789abcdef: invalid_argument "
        "(sku_id: is required)"]
    caplog.clear()
    clock.now += 1
    refusing.refused(GET_ORDER, INVALID_ARGUMENT, CALLER, "order_id: is longer than 200 bytes")
    assert caplog.messages == [
        f"refused {GET_ORDER} from storefront key 0123456789abcdef: invalid_argument "
        "(order_id: is longer than 200 bytes); 5 more since the last such line"]


def test_an_unexpected_error_keeps_one_traceback_per_interval(refusals, caplog):
    refusing, counted, clock = refusals
    for _ in range(3):
        try:
            raise KeyError("boom")
        except KeyError as error:
            refusing.failed(GET_ORDER, error)
    assert [(record.message, record.exc_info is not None) for record in caplog.records] == [
        (f"{GET_ORDER} failed", True)]
    assert counted.counts == {}  # a bug is not the caller's bad request
    clock.now += limits.bad_request_log_interval_seconds
    refusing.failed(GET_ORDER, KeyError("again"))
    assert caplog.records[-1].message == f"{GET_ORDER} failed; 2 more since the last such line"
