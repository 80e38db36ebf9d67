"""Ledger benchmark: orders/s of CreateOrder + ConfirmPayment of one-code orders, run in
process through the engine (the domain plans a worker runs, group-committed), with the ledger
against the same with its bookings replaced by a no-op, in the same run.

One data dir under bench/results/tmp (removed at the end) holds SKU "gift" and enough codes
for every round. Each round drives `--orders` orders, `--in-flight` at a time from one asyncio
loop (each order: the create plan, then the confirm plan, each awaited), every order from its
own buyer; the settings alternate round by round (ABBA), so both see the same machine. With
the ledger, a payment books a sale and its codes' cost (two entries, one commit with the
transition, kamicore.domain.refunds.paid); without, that call only records the provider. The
figures: the median orders/s over each setting's rounds, their ratio, the per-round ratios,
the p50/p99 of one order (create + confirm), and the median CPU time of this process per
order (less sensitive than orders/s to whatever else the machine runs). The target: at most
10% slower with the ledger (ratio >= 0.90).

Usage: .venv/bin/python bench/ledger_bench.py [--quick] [--rounds N] [--orders N] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time

from common import (
    Rounds, expect, log, machine, median, ratios_text, round_ratios, temp_dir, write_result,
)

PRICE = 9_000_000
HOLD_SECONDS = 900
TARGET = 0.90  # orders/s with the ledger / without: at least this


class Setting(Rounds):
    def __init__(self):
        self.rates, self.latencies, self.cpu = [], [], []


def seed(engine, codes: int) -> None:
    from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
    from kamicore.statuses import DeliveryKind
    Catalog(engine).create(Sku("gift", "gift", "USD", 10_000_000, DeliveryKind.CODE,
                               (ChannelPrice("web", PRICE),)))
    for start in range(0, codes, 10_000):
        count = min(10_000, codes - start)
        result = engine.import_codes("gift", f"batch-{start}",
                                     [f"GIFT-{start + n:09d}" for n in range(count)],
                                     supplier="acme", unit_cost_micros=3_000_000)
        expect(result.imported == count, f"import: {result}")


async def drive(engine, scorer, tag: str, orders: int, in_flight: int):
    """-> (orders/s, seconds per order, CPU seconds of this process per order) of `orders`
    orders, `in_flight` at a time."""
    from kamicore.domain import orders as domain
    from kamicore.statuses import ConfirmPaymentStatus, CreateOrderStatus
    latencies = []
    numbers = iter(range(orders))

    async def one(number: int) -> None:
        key = f"{tag}-{number}"
        order_id = f"bench/{key}".encode()
        request = domain.validate_create(domain.OrderRequest(
            key, f"buyer-{key}", "", f"device-{key}", [("gift", 1)], HOLD_SECONDS),
            HOLD_SECONDS)
        started = time.perf_counter()
        status, _, _ = await engine.run_async(engine.plan(
            domain.create_order, (order_id, "bench", "web", request, scorer), "bench",
            full=lambda: (None, None, None)))
        expect(status == CreateOrderStatus.CREATED, f"CreateOrder {key}: {status}")
        status, _, _ = await engine.run_async(engine.plan(
            domain.confirm_payment, (order_id, f"pay-{key}", "USD", PRICE, "default"), "bench",
            full=lambda: (None, False, [])))
        expect(status == ConfirmPaymentStatus.PAID, f"ConfirmPayment {key}: {status}")
        latencies.append(time.perf_counter() - started)

    async def worker() -> None:
        for number in numbers:
            await one(number)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return (orders / (time.perf_counter() - started), latencies,
            (time.process_time() - cpu) / orders)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--rounds", type=int, default=10,
                        help="rounds per setting (default 10)")
    parser.add_argument("--orders", type=int, default=5000, help="orders per round")
    parser.add_argument("--in-flight", type=int, default=64, help="orders in flight")
    parser.add_argument("--out", default=None, help="JSON results (default: print)")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.orders = 2, 300

    from kamicore.domain import ledger, orders, refunds
    from kamicore.engine import Engine
    booking = refunds.paid

    def without_ledger(transaction, order_id, meta, provider):
        meta["provider"] = provider

    root = temp_dir("ledger-bench-")
    try:
        engine = Engine(root / "data")
        seed(engine, (2 * options.rounds + 1) * options.orders)
        scorer = orders.Orders(engine).risk
        settings = {True: Setting(), False: Setting()}
        for round_number in range(-1, options.rounds):  # round -1 warms up, unmeasured
            for with_ledger in (True, False) if round_number % 2 else (False, True):
                refunds.paid = booking if with_ledger else without_ledger
                rate, latencies, cpu = asyncio.run(drive(
                    engine, scorer, f"r{round_number}-{int(with_ledger)}",
                    options.orders // (2 if round_number < 0 else 1), options.in_flight))
                if round_number < 0:
                    continue
                settings[with_ledger].rates.append(rate)
                settings[with_ledger].latencies += latencies
                settings[with_ledger].cpu.append(cpu)
                log(f"round {round_number + 1}: ledger {'on ' if with_ledger else 'off'} "
                    f"{rate:,.0f} orders/s, {cpu * 1e6:.0f} us CPU per order")
        refunds.paid = booking
        entries = ledger.entries(engine, limit=1)
        expect(bool(entries) and entries[0]["kind"] == "sale", "the ledger booked nothing")
        engine.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    on, off = settings[True], settings[False]
    ratio = on.rate / off.rate
    per_round = round_ratios(on.rates, off.rates)
    result = {"machine": machine(), "rounds": options.rounds, "orders_per_round": options.orders,
              "in_flight": options.in_flight,
              "orders_per_second_with_ledger": round(on.rate),
              "orders_per_second_without_ledger": round(off.rate),
              "ratio": round(ratio, 3), "round_ratios": [round(value, 3) for value in per_round],
              "p50_ms_with_ledger": round(on.percentile_ms(0.5), 2),
              "p50_ms_without_ledger": round(off.percentile_ms(0.5), 2),
              "p99_ms_with_ledger": round(on.percentile_ms(0.99), 2),
              "p99_ms_without_ledger": round(off.percentile_ms(0.99), 2),
              "cpu_us_per_order_with_ledger": round(median(on.cpu) * 1e6, 1),
              "cpu_us_per_order_without_ledger": round(median(off.cpu) * 1e6, 1),
              "target": TARGET, "met": ratio >= TARGET}
    log(f"orders/s: with the ledger {on.rate:,.0f}, without {off.rate:,.0f}: x{ratio:.3f} "
        f"(rounds {ratios_text(per_round)}); p99 {on.percentile_ms(0.99):.1f} ms vs "
        f"{off.percentile_ms(0.99):.1f} ms; CPU per order {median(on.cpu) * 1e6:.0f} us vs "
        f"{median(off.cpu) * 1e6:.0f} us; target x{TARGET}")
    write_result(result, options.out)
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
