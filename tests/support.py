"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

from kamicore.statuses import ConfirmStatus, ReserveStatus

T0_MS = 1_700_000_000_000  # a fixed "now" for tests that control time
DAY_MS = 86_400_000


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, now_ms: int = T0_MS):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, milliseconds: int) -> None:
        self.now_ms += milliseconds


def sell(engine, codes, sku="sku", order_id="order", batch="batch", **validity):
    """Import `codes` into a fresh batch and sell them all in one order."""
    result = engine.import_codes(sku, batch, codes, **validity)
    assert result.imported == len(codes)
    [reserved] = engine.reserve([(order_id, [(sku, len(codes))], 60)])
    assert reserved.status == ReserveStatus.RESERVED
    [confirmed] = engine.confirm([order_id])
    assert confirmed.status == ConfirmStatus.SOLD
    return confirmed.code_ids
