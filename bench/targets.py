"""The targets of the engine and server issues: the engine and server benchmarks mark their own
tables with them, and the `make bench` report (bench/report.py) checks them all."""

from __future__ import annotations

# the engine (DESIGN.md: the engine is never allowed to be the bottleneck)
engine_redeem_codes_per_second = 200_000  # durable redeem, 256 codes per call
engine_redeem_fraction_of_raw = 0.8  # of the raw py-lmdb loop (bench/raw_floor.py)
engine_import_codes_per_second = 200_000

# the server
server_unary_ratio = 0.8  # h2load unary Redeem, kamicore / do-nothing
server_batch_codes_per_second = 150_000  # RedeemBatch of 1,000 codes
server_orders_per_second = 3_000  # CreateOrder + ConfirmPayment of one code


def verdict(value: float, target: float) -> str:
    return "met" if value >= target else "MISSED"
