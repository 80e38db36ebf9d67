"""Events benchmark: what writing business events in the commit of their change costs an order,
in the same run.

One engine in process (a data dir under bench/results/tmp, removed at the end), its codes
imported first. Each round places `--orders` one-code orders - CreateOrder's plan, then
ConfirmPayment's, `--in-flight` of each queued at once so that they share group commits as a
busy server's do - once with events written (order.created, order.paid, order.delivered: three
outbox records per order, each in its order's own commit) and once with
kamicore.domain.events.emit replaced by a no-op, the two back to back in alternating order.
Figures: orders/s per round (median), the per-order latency from queueing the create to the
confirm's commit (p50, p99), the CPU seconds per order of this process, and the ratios of
the two settings round by round.

Redemptions write their outbox record in C (one per redeem batch, beside the audit block): it
cannot be switched off at runtime, and `make bench-engine` measures that path as it ships.

Usage: .venv/bin/python bench/events_bench.py [--quick] [--rounds N] [--orders N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

from common import (
    git_commit, log, machine, median, number, percentile_ms, ratios_text, round_ratios,
    temp_dir,
)

SKU = "bench-events"
CHANNEL = "web"
PRICE_MICROS = 9_000_000


def place_orders(engine, orders, first: int, count: int, in_flight: int) -> list[float]:
    """`count` one-code orders, created then paid, `in_flight` at a time -> each order's
    seconds from queueing its create to its confirm's commit."""
    from kamicore.domain.order_requests import OrderRequest, validate_create
    from kamicore.domain.orders import confirm_payment, create_order
    latencies = []
    for start in range(first, first + count, in_flight):
        numbers = range(start, min(start + in_flight, first + count))
        began = time.perf_counter()
        created = []
        for n in numbers:
            request = validate_create(OrderRequest(f"o{n}", f"buyer-{n}", "", "",
                                                   [(SKU, 1)], 900), 900)
            created.append(engine.submit(engine.plan(
                create_order, (f"storefront:{CHANNEL}/o{n}".encode(), f"storefront:{CHANNEL}",
                               CHANNEL, request, orders.risk),
                "bench", full=lambda: None)))
        for future in created:
            assert future.result()[0].name == "CREATED", future.result()
        paid = [engine.submit(engine.plan(
            confirm_payment, (f"storefront:{CHANNEL}/o{n}".encode(), f"pay-{n}", "USD",
                              PRICE_MICROS), "bench", full=lambda: None)) for n in numbers]
        for future in paid:
            assert future.result()[0].name == "PAID", future.result()
        latencies += [time.perf_counter() - began] * len(numbers)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per setting (default 6)")
    parser.add_argument("--orders", type=int, default=2000, help="orders per round")
    parser.add_argument("--in-flight", type=int, default=64, help="orders queued at once")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.orders = 2, 400

    from kamicore.domain import events
    from kamicore.domain.catalog import Catalog, ChannelPrice, Sku
    from kamicore.domain.orders import Orders
    from kamicore.engine import Engine
    from kamicore.statuses import DeliveryKind

    root = temp_dir("events-bench-")
    emit = events.emit
    try:
        engine = Engine(root / "data")
        Catalog(engine).create(Sku(SKU, "Events bench", "USD", 10_000_000, DeliveryKind.CODE,
                                   (ChannelPrice(CHANNEL, PRICE_MICROS),)))
        total = 2 * (options.rounds + 1) * options.orders  # a warm-up round of each too
        log(f"importing {total:,} codes ...")
        for start in range(0, total, 10_000):
            engine.import_codes(SKU, f"b{start}", [f"EVB-{n:010d}" for n in range(
                start, min(start + 10_000, total))])
        orders = Orders(engine)
        figures = {True: {"rates": [], "latencies": [], "cpu": []},
                   False: {"rates": [], "latencies": [], "cpu": []}}
        next_order = 0
        for round_number in range(-1, options.rounds):  # round -1 warms up, unmeasured
            for with_events in (True, False) if round_number % 2 else (False, True):
                events.emit = emit if with_events else (lambda *args, **kwargs: None)
                before_cpu, before = time.process_time(), time.perf_counter()
                latencies = place_orders(engine, orders, next_order, options.orders,
                                         options.in_flight)
                seconds = time.perf_counter() - before
                cpu = time.process_time() - before_cpu
                next_order += options.orders
                if round_number >= 0:
                    figure = figures[with_events]
                    figure["rates"].append(options.orders / seconds)
                    figure["latencies"] += latencies
                    figure["cpu"].append(cpu / options.orders)
                log(f"round {round_number} events={'on' if with_events else 'off'}: "
                    f"{number(options.orders / seconds)} orders/s")
        events.emit = emit
        told = events.head(engine)
        engine.close()
    finally:
        events.emit = emit
        shutil.rmtree(root, ignore_errors=True)

    on, off = figures[True], figures[False]
    ratios = round_ratios(on["rates"], off["rates"])
    print(f"\nmachine: {machine()} · commit {git_commit()} · {options.rounds} rounds of "
          f"{options.orders:,} orders per setting, {options.in_flight} in flight")
    print("| setting | orders/s (median) | p50 ms | p99 ms | CPU ms per order |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, figure in (("events written", on), ("events off (emit a no-op)", off)):
        ordered = sorted(figure["latencies"])
        print(f"| {name} | {number(median(figure['rates']))} | "
              f"{percentile_ms(ordered, 0.5):.1f} | {percentile_ms(ordered, 0.99):.1f} | "
              f"{median(figure['cpu']) * 1000:.3f} |")
    print(f"\nwith / without, per round: {ratios_text(ratios)} · median {median(ratios):.3f}"
          f" · CPU per order with / without: "
          f"{median(on['cpu']) / median(off['cpu']):.3f} · events told: {told:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
