"""What the end-to-end tests (tests/test_e2e_*.py) share besides the server and its clients
(tests/server_harness.py; the one shared server and its keys are fixtures in tests/conftest.py):
short names for statuses, unique ids, waiting, reading metrics, and checks that no plaintext code
leaks."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest
from kamicore.v1 import orders_pb2, redemption_pb2
from prometheus_client.parser import text_string_to_metric_families

O = orders_pb2  # noqa: E741 - short names for the enums used on every other line
R = redemption_pb2
CREATED = orders_pb2.CREATE_ORDER_STATUS_CREATED
PAID = orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
FOUND = orders_pb2.ORDER_LOOKUP_STATUS_FOUND
NOT_FOUND = orders_pb2.ORDER_LOOKUP_STATUS_NOT_FOUND
hold_expiry_wait_seconds = 15.0  # the sweeper runs every second; generous for a slow machine


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def plaintexts(order: orders_pb2.Order) -> list[str]:
    return [code.code for code in order.codes]


def assert_no_plaintext(text: str | bytes, codes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    upper = text.upper()
    for code in codes:
        for form in (code.upper(), code.replace("-", "").upper()):
            if form in upper:  # not an assert: the report must not print the secret either
                raise AssertionError(f"a plaintext code (masked: ...{code[-4:]}) appears in "
                                     f"{where}")


def metric_samples(text: str) -> dict[tuple, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric_value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
