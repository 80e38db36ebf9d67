"""WatchEvents benchmark: what watchers cost a server taking orders, over gRPC, in one run.

One kamicore (`kamicore serve --workers 2`, free 127.0.0.1 ports, a data dir under
bench/results/tmp, removed at the end). An asyncio client keeps `--concurrency` orders in flight
over 4 storefront keys, each order CreateOrder then ConfirmPayment (PAID), `--orders` per round,
in three settings whose order rotates round by round:
- no watcher;
- one watcher reading every event (an admin key, in its own process, so that its reading does
  not share this client's CPU time): the figure is also how long an order.delivered event takes
  to reach it after the ConfirmPayment that caused it was answered (p50, p99);
- one watcher that reads nothing (its flow-control window fills; the server cuts it off after
  watch_write_timeout_seconds): it must cost the orders nothing.
Figures: orders/s per round (median), p50/p99 of one order (both calls), the server's CPU time
per order (every process of `kamicore serve`: what a watcher costs the server itself, apart from
the watcher's own process competing for the same 2 cores), the ratios to the rounds without a
watcher, and the delivery lag of the reading watcher.

Usage: .venv/bin/python bench/watch_bench.py [--quick] [--rounds N] [--orders N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from common import (  # noqa: E402
    git_commit, log, machine, median, number, percentile_ms, ratios_text, round_ratios,
)
from processes import cpu_seconds  # noqa: E402

KEYS = 4
SETTINGS = ("none", "reading", "stuck")
NON_READER_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]


async def run_round(target: str, keys: list[str], sku: str, tag: str, concurrency: int,
                    orders: int) -> tuple[float, list[float], dict[str, float]]:
    """-> (orders/s, each order's seconds, {order id: when its payment was answered})."""
    import grpc

    from kamicore.v1 import orders_pb2, orders_pb2_grpc
    channels = [grpc.aio.insecure_channel(target) for _ in keys]
    stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]
    latencies: list[float] = []
    paid_at: dict[str, float] = {}
    numbers = iter(range(orders))

    async def buyer(index: int) -> None:
        stub = stubs[index % len(stubs)]
        metadata = (("authorization", f"Bearer {keys[index % len(keys)]}"),)
        for n in numbers:
            started = time.perf_counter()
            created = await stub.CreateOrder(orders_pb2.CreateOrderRequest(
                idempotency_key=f"{tag}-{n}", buyer=orders_pb2.Buyer(account_id=f"b-{n}"),
                lines=[orders_pb2.OrderLine(sku_id=sku, quantity=1)]),
                metadata=metadata, timeout=30)
            assert created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED, created
            paid = await stub.ConfirmPayment(orders_pb2.ConfirmPaymentRequest(
                order_id=created.order.order_id, payment_reference=f"pay-{tag}-{n}",
                amount=created.order.total), metadata=metadata, timeout=30)
            assert paid.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID, paid
            now = time.perf_counter()
            latencies.append(now - started)
            paid_at[created.order.order_id] = time.time()

    began = time.perf_counter()
    await asyncio.gather(*(buyer(index) for index in range(concurrency)))
    elapsed = time.perf_counter() - began
    for channel in channels:
        await channel.close()
    return orders / elapsed, latencies, paid_at


def reading_watcher(target: str, key: str, sku: str, ready, stop, delivered) -> None:
    """A process: watch every event of `sku`, noting when each order.delivered arrived."""
    import grpc

    from kamicore.v1 import events_pb2, events_pb2_grpc
    channel = grpc.insecure_channel(target)
    call = events_pb2_grpc.EventsStub(channel).WatchEvents(
        events_pb2.WatchEventsRequest(skus=[sku], from_now=True),
        metadata=(("authorization", f"Bearer {key}"),))
    call.initial_metadata()
    ready.set()
    got = {}
    try:
        for reply in call:  # a page of events per reply
            now = time.time()
            for event in reply.events:
                if event.type == events_pb2.EVENT_TYPE_ORDER_DELIVERED:
                    got[event.order_id] = now
            if stop.is_set():
                break
    except grpc.RpcError:
        pass
    delivered.put(got)
    channel.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per setting (default 5)")
    parser.add_argument("--orders", type=int, default=2000, help="orders per round")
    parser.add_argument("--concurrency", type=int, default=64, help="orders in flight")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.orders = 2, 300

    import grpc

    from kamicore.domain.risk_rules import DEFAULT_RULES
    from kamicore.v1 import events_pb2, events_pb2_grpc
    from tests.server_harness import Server, risk_settings_file, stocked_sku

    figures = {setting: {"rates": [], "latencies": [], "cpu": []} for setting in SETTINGS}
    lags: list[float] = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as base:
        rules = {**DEFAULT_RULES, "rules": [rule for rule in DEFAULT_RULES["rules"]
                                            if rule["kind"] not in ("velocity", "quantity")]}
        server = Server(Path(base) / "data", Path(base), "watch-bench", settings={
            "config": str(risk_settings_file(Path(base) / "kamicore.toml", rules))}).start()
        try:
            admin = server.client(server.admin_key)
            sku = "bench-watch"
            # every round, a warm-up, and the one order that ends each reading round
            total = (len(SETTINGS) * options.rounds + 1) * options.orders + options.rounds
            log(f"importing {total:,} codes ...")
            stocked_sku(admin, sku, 0)
            from tests.server_harness import import_codes
            for start in range(0, total, 10_000):
                import_codes(admin, sku, [f"WB-{n:010d}" for n in range(
                    start, min(start + 10_000, total))], batch_id=f"b{start}")
            keys = [server.create_key("storefront", "web")[0] for _ in range(KEYS)]
            watcher_key = server.create_key("admin")[0]
            asyncio.run(run_round(server.target, keys, sku, "warm", options.concurrency,
                                  options.orders))
            for round_number in range(options.rounds):
                for turn in range(len(SETTINGS)):
                    setting = SETTINGS[(round_number + turn) % len(SETTINGS)]
                    tag = f"r{round_number}-{setting}"
                    stuck = process = None
                    if setting == "stuck":
                        stuck_channel = grpc.insecure_channel(server.target,
                                                              options=NON_READER_OPTIONS)
                        stuck = events_pb2_grpc.EventsStub(stuck_channel).WatchEvents(
                            events_pb2.WatchEventsRequest(skus=[sku], from_now=True),
                            metadata=(("authorization", f"Bearer {watcher_key}"),))
                        stuck.initial_metadata()
                    if setting == "reading":
                        ready, stop, delivered = context.Event(), context.Event(), context.Queue()
                        process = context.Process(target=reading_watcher, args=(
                            server.target, watcher_key, sku, ready, stop, delivered))
                        process.start()
                        ready.wait(30)
                    server_cpu = cpu_seconds([server.process.pid])
                    rate, latencies, paid_at = asyncio.run(run_round(
                        server.target, keys, sku, tag, options.concurrency, options.orders))
                    figures[setting]["cpu"].append(
                        (cpu_seconds([server.process.pid]) - server_cpu) / options.orders)
                    figures[setting]["rates"].append(rate)
                    figures[setting]["latencies"] += latencies
                    if process is not None:
                        time.sleep(1.0)  # the last events arrive
                        stop.set()
                        # one more order: its events wake the watcher, which then stops
                        asyncio.run(run_round(server.target, keys[:1], sku, f"{tag}-end", 1, 1))
                        got = delivered.get(timeout=30)
                        process.join(30)
                        lags += [got[order] - at for order, at in paid_at.items() if order in got]
                        missing = len(paid_at) - sum(order in got for order in paid_at)
                        if missing:
                            raise SystemExit(f"the watcher missed {missing} deliveries")
                    if stuck is not None:
                        stuck.cancel()
                        stuck_channel.close()
                    log(f"round {round_number} {setting}: {number(rate)} orders/s")
        finally:
            exit_code = server.stop()
        if exit_code != 0:
            raise SystemExit(f"the server exited with {exit_code}")

    none = figures["none"]["rates"]
    print(f"\nmachine: {machine()} · commit {git_commit()} · 2 workers · {options.rounds} rounds "
          f"of {options.orders:,} orders per setting, {options.concurrency} in flight")
    print("| watchers | orders/s (median) | order p50 ms | order p99 ms | server CPU ms per "
          "order | orders/s / none, per round |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for setting, name in (("none", "none"), ("reading", "one reading every event"),
                          ("stuck", "one that reads nothing")):
        figure = figures[setting]
        figure["latencies"].sort()
        ratios = round_ratios(figure["rates"], none)
        print(f"| {name} | {number(median(figure['rates']))} | "
              f"{percentile_ms(figure['latencies'], 0.5):.1f} | "
              f"{percentile_ms(figure['latencies'], 0.99):.1f} | "
              f"{median(figure['cpu']) * 1000:.3f} | "
              f"{ratios_text(ratios)} (median {median(ratios):.3f}) |")
    lags.sort()
    print(f"\norder.delivered reaches the reading watcher, after its ConfirmPayment was answered "
          f"(below 0: before the reply reached the client): p50 {percentile_ms(lags, 0.5):.1f} "
          f"ms, p99 {percentile_ms(lags, 0.99):.1f} ms ({len(lags):,} orders)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
