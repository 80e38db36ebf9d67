"""Selling stock straight through the engine (no server): the engine benchmark's setup and the
scaling benchmark's data dirs both sell codes this way before anything is timed."""

from __future__ import annotations

from collections.abc import Iterator

from common import expect
from kamicore import ConfirmStatus, Engine, ReserveStatus
from kamicore_access import codes_per_line_max, codes_per_order_max

hold_seconds = 3600


def order_lines(sku: str, count: int) -> list[tuple[str, int]]:
    """One sku's order lines for `count` codes, at most codes_per_line_max a line."""
    per_line = codes_per_line_max
    return [(sku, per_line)] * (count // per_line) + (
        [(sku, count % per_line)] if count % per_line else [])


def sell(engine: Engine, sku: str, count: int, order_ids: Iterator[str],
         reveal: bool = False) -> list[str]:
    """Reserve + confirm `count` codes of `sku` in the largest orders (FEFO picks the lowest code
    ids first); with `reveal`, the sold codes' plaintexts."""
    plaintexts = []
    for start in range(0, count, codes_per_order_max):
        order_id = next(order_ids)
        lines = order_lines(sku, min(codes_per_order_max, count - start))
        [reserved] = engine.reserve([(order_id, lines, hold_seconds)])
        expect(reserved.status == ReserveStatus.RESERVED, f"sell: {reserved.status!r}")
        [confirmed] = engine.confirm([order_id])
        expect(confirmed.status == ConfirmStatus.SOLD, f"sell: {confirmed.status!r}")
        if reveal:
            plaintexts.extend(engine.order(order_id, reveal=True).plaintexts)
    return plaintexts
