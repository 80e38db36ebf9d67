"""Helpers shared by tests (importable, unlike conftest)."""

from __future__ import annotations

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
