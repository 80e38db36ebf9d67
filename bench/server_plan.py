"""How much work the server benchmark does, and with how much in flight."""

from __future__ import annotations

from dataclasses import dataclass

from rpcs import BATCH_CODES

WORKERS = 2  # kamicore's workers, and the do-nothing server's processes
SKU = "bench-gift-50"
FACE_VALUE_MICROS = 50_000_000
TERMINAL = "T-01"  # the pos key's terminal

# the driver: per process
DRIVER_PROCESSES = 2
IN_FLIGHT = {"unary": 64, "batch": 4, "orders": 32}  # concurrent calls per process
STREAMS_PER_PROCESS = 4

warmup_fraction = 0.1  # round 0: this share of every count, not measured


@dataclass(frozen=True)
class Plan:
    """How much work. Counts are per round and split evenly over the driver processes."""

    rounds: int
    h2load_requests: int  # per h2load run
    unary: int  # distinct Redeem calls
    batch_calls: int  # RedeemBatch calls of BATCH_CODES codes
    stream: int  # RedeemStream items
    orders: int  # CreateOrder + ConfirmPayment pairs
    job_deadline_seconds: float  # a driver job stops here and reports what it finished
    run_limit_seconds: int  # the whole run; past it everything is stopped

    def warmup(self, count: int, clients: int) -> int:
        """Round 0's share of a count."""
        return max(clients, int(count * warmup_fraction))

    def sold_codes(self, clients: int) -> int:
        """SOLD codes the Redeem figures take (plus the one h2load replays), warm-up included."""
        return 1 + sum((self.rounds * count + self.warmup(count, clients)) * size
                       for count, size in ((self.unary, 1), (self.batch_calls, BATCH_CODES),
                                           (self.stream, 1)))

    def available_codes(self, clients: int) -> int:
        return self.rounds * self.orders + self.warmup(self.orders, clients)


# sized for ~4 s per kamicore figure on this 2-core machine (kamicore does ~1,000 distinct
# Redeem/s, ~45,000 RedeemBatch codes/s, ~2,000 stream items/s, ~450 orders/s there)
PLAN_FULL = Plan(rounds=3, h2load_requests=10_000, unary=5_000, batch_calls=120, stream=10_000,
                 orders=2_000, job_deadline_seconds=20.0, run_limit_seconds=600)
PLAN_QUICK = Plan(rounds=1, h2load_requests=3_000, unary=2_000, batch_calls=40, stream=4_000,
                  orders=600, job_deadline_seconds=10.0, run_limit_seconds=240)
