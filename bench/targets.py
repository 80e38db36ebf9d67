"""The targets of the engine and server issues: the engine and server benchmarks mark their own
tables with them, and the `make bench` report (bench/report.py) checks them all. Ratios are taken
in one run (both sides measured back to back, round by round), so they hold on a shared machine.
"""

from __future__ import annotations

# the engine (DESIGN.md: the engine is never allowed to be the bottleneck)
engine_redeem_codes_per_second = 200_000  # durable redeem, 256 codes per call
engine_import_codes_per_second = 200_000
# issue 8: of the C floor (bench/c_floor.c) doing only the unavoidable work, in the same run
engine_redeem_fraction_of_floor = 0.85  # durable redeem, 256 per call, sale and random order
engine_import_fraction_of_floor = 0.8  # import, 10,000 codes per call

# the server
server_batch_codes_per_second = 150_000  # RedeemBatch of 1,000 codes
server_orders_per_second = 3_000  # CreateOrder + ConfirmPayment of one code
# issue 8: kamicore / the do-nothing server, in the same run
server_unary_ratio = 0.85  # unary Redeem: distinct codes (driver) and one replayed (h2load)
server_verify_ratio = 0.9  # VerifyCode (h2load)
server_stream_ratio = 0.85  # RedeemStream
server_orders_ratio = 0.7  # CreateOrder + ConfirmPayment of one code
# issue 8: open loop at 80% of each unary figure's peak: the worst p99 of them, ms
server_p99_ms_at_80 = 20.0


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "MISSED"


def verdict_below(value: float, target: float) -> str:
    """For a bound from above (a latency)."""
    return "met" if value < target else "MISSED"
