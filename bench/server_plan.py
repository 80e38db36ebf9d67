"""How much work the server benchmark does, and with how much in flight."""

from __future__ import annotations

from dataclasses import dataclass

from rpcs import BATCH_CODES

WORKERS = 2  # kamicore's workers, and the do-nothing server's processes (--workers)
SKU = "bench-gift-50"
FACE_VALUE_MICROS = 50_000_000
TERMINAL = "T-01"  # the pos key's terminal

# the driver: per process
DRIVER_PROCESSES = 2  # --clients
IN_FLIGHT = {"unary": 64, "batch": 4, "orders": 32}  # concurrent calls per process
STREAMS_PER_PROCESS = 4

warmup_fraction = 0.1  # round 0: this share of every count, not measured
OPEN_LOOP_LEVELS = (0.5, 0.8)  # open loop: offered rates, as fractions of each unary peak


def scaling_worker_counts(workers: int) -> list[int]:
    """The worker counts measured besides `workers` (each with a warm-up round and one measured
    round): the powers of two below it, so 1 for 2 workers, 1, 2 and 4 for 8."""
    return [count for count in (2 ** power for power in range(10)) if count < workers]


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
    open_loop_seconds: float  # the schedule of one open-loop run
    open_loop_codes: int  # SOLD codes set aside for the open-loop distinct Redeem runs
    open_loop_orders: int  # AVAILABLE codes set aside for the open-loop order runs

    def warmup(self, count: int, clients: int) -> int:
        """Round 0's share of a count."""
        return max(clients, int(count * warmup_fraction))

    def consumed(self, count: int, clients: int, workers: int) -> int:
        """Of a per-round count: the rounds and warm-up at `workers`, and the scaling points'."""
        points = len(scaling_worker_counts(workers))
        return ((self.rounds + points) * count
                + (1 + points) * self.warmup(count, clients))

    def sold_codes(self, clients: int, workers: int) -> int:
        """SOLD codes the Redeem figures take (plus the one h2load replays), warm-up, scaling
        points and open loop included."""
        return 1 + self.open_loop_codes + sum(
            self.consumed(count, clients, workers) * size
            for count, size in ((self.unary, 1), (self.batch_calls, BATCH_CODES),
                                (self.stream, 1)))

    def available_codes(self, clients: int, workers: int) -> int:
        return self.open_loop_orders + self.consumed(self.orders, clients, workers)


# sized for ~4 s per kamicore figure on this 2-core machine (kamicore does ~1,000-2,500 distinct
# Redeem/s, ~45,000-100,000 RedeemBatch codes/s, ~2,000-5,000 stream items/s, ~450-900 orders/s
# there); open loop: 16 runs (4 figures x 2 rates x 2 servers) of open_loop_seconds; the open-loop
# budgets last open_loop_seconds at 1.3x a peak of ~7,500 Redeem/s and ~2,500 orders/s (past
# that a run's schedule is cut to the budget)
PLAN_FULL = Plan(rounds=3, h2load_requests=10_000, unary=5_000, batch_calls=120, stream=10_000,
                 orders=2_000, job_deadline_seconds=20.0, run_limit_seconds=900,
                 open_loop_seconds=6.0, open_loop_codes=60_000, open_loop_orders=20_000)
PLAN_QUICK = Plan(rounds=1, h2load_requests=3_000, unary=2_000, batch_calls=40, stream=4_000,
                  orders=600, job_deadline_seconds=10.0, run_limit_seconds=300,
                  open_loop_seconds=2.5, open_loop_codes=25_000, open_loop_orders=8_000)
