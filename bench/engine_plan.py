"""How much work the engine benchmark does: calls per scenario and round, rounds, and N (the SOLD
codes in every store), sized so that the redeems never run out of distinct codes."""

from __future__ import annotations

from dataclasses import dataclass

# calls per measured round, by scenario key (see engine_scenarios.Bench.scenarios); a C floor's
# calls are its transactions (256 codes; import 10,000). Full: ~3 min on 2 slow cores, most of
# it in the 256- and 10,000-code figures; batch-1 figures are fsync-bound.
CALLS_FULL = {
    "floor-256": 240, "redeem-1": 400, "redeem-16": 240, "redeem-256": 240,
    "redeem-256-interpreted": 60, "floor-256-random": 40, "redeem-256-random": 40,
    "floor-lookups-256": 240, "verify-256": 120,
    "import-1": 400, "import-16": 240, "import-256": 240, "import-256-interpreted": 60,
    "floor-import-10000": 4, "import-10000": 4,
    "order-1": 200, "order-16": 160, "order-256": 60,
}
CALLS_QUICK = {
    "floor-256": 60, "redeem-1": 200, "redeem-16": 120, "redeem-256": 60,
    "redeem-256-interpreted": 24, "floor-256-random": 20, "redeem-256-random": 20,
    "floor-lookups-256": 60, "verify-256": 40,
    "import-1": 200, "import-16": 120, "import-256": 60, "import-256-interpreted": 24,
    "floor-import-10000": 2, "import-10000": 2,
    "order-1": 100, "order-16": 80, "order-256": 24,
}
ROUNDS_FULL, ROUNDS_QUICK = 5, 3
check_codes_max = 200_000  # Engine.check() after the run decrypts every code: small N only


@dataclass(frozen=True)
class Plan:
    """How much work: N codes in every store, calls per measured round, rounds."""

    calls: dict
    rounds: int
    stored_codes: int = 0  # N: SOLD codes in the engine's store and in the C floor's

    def warmup_calls(self, key: str) -> int:
        return max(1, self.calls[key] // 10)

    def consumed(self, key: str, size: int) -> int:
        """Codes a scenario takes over the warm-up and every measured round."""
        return (self.rounds * self.calls[key] + self.warmup_calls(key)) * size

    def with_stored_codes(self, stored_codes: int | None) -> Plan:
        """N: twice what the redeems in either order consume (every redeem takes a distinct
        SOLD code; the random half is as large as the sale-order half), unless given."""
        in_sale_order = max(
            self.consumed("redeem-1", 1) + self.consumed("redeem-16", 16)
            + self.consumed("redeem-256", 256), self.consumed("redeem-256-interpreted", 256),
            self.consumed("floor-256", 256))
        in_random_order = max(self.consumed("redeem-256-random", 256),
                              self.consumed("floor-256-random", 256))
        needed = 2 * max(in_sale_order, in_random_order)
        needed = -(-needed * 11 // 10 // 10_000) * 10_000  # 10% spare, whole ten-thousands
        if stored_codes is not None:
            if stored_codes < needed:
                raise SystemExit(f"--codes: this plan needs at least {needed:,}")
            needed = stored_codes
        return Plan(self.calls, self.rounds, needed)
