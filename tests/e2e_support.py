"""What the end-to-end tests (tests/test_e2e_*.py) share besides the server and its clients
(tests/server_harness.py; the one shared server and its keys are fixtures in tests/conftest.py):
short names for statuses, unique ids, waiting, reading metrics, and checks that no plaintext code
leaks."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest
from kamicore import limits
from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, redemption_pb2
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


def sized(prefix: str, bytes_max: int, fill: str = "x") -> str:
    """A text of exactly `bytes_max` bytes that starts with `prefix`."""
    return prefix.ljust(bytes_max, fill)[:bytes_max]


def largest_sku(sku_id: str, channel: str) -> catalog_pb2.Sku:
    """A SKU with every field at its limit (its id starts with `sku_id`), sold on `channel`
    among others."""
    channels = [channel] + [sized(f"ch-{n}", limits.name_bytes_max, "c")
                            for n in range(limits.prices_per_sku_max - 1)]
    return catalog_pb2.Sku(
        sku_id=sized(sku_id, limits.name_bytes_max), name=sized("", limits.display_name_bytes_max),
        face_value=common_pb2.Money(currency="CNY", amount_micros=limits.price_micros_max),
        delivery_kind=catalog_pb2.DELIVERY_KIND_CODE,
        prices=[catalog_pb2.ChannelPrice(channel=name, price_micros=limits.price_micros_max)
                for name in channels],
        low_stock_threshold=2**32 - 1,
        regions=[sized(f"R{n}", limits.region_bytes_max, "0")
                 for n in range(limits.regions_per_sku_max)],
        supplier_ids=[sized(f"sup-{n}", limits.name_bytes_max, "p")
                      for n in range(limits.suppliers_per_sku_max)],
        routing_strategy=catalog_pb2.ROUTING_STRATEGY_FASTEST)


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
