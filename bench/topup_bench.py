"""Direct top-up benchmark: orders/s of CreateOrder + ConfirmPayment of DIRECT_TOPUP orders
against a simulated supplier (its own process, HTTP+JSON) answering at once, then with 200 ms
of latency, with the median and p99 of one order (both calls).

One kamicore (`kamicore serve --workers 2` with its dispatcher, free 127.0.0.1 ports, a data dir
under bench/results/tmp, removed at the end) and one simulated supplier; an asyncio client keeps
`--concurrency` orders in flight over 4 storefront keys (so no key meets its fair-use share),
each order CreateOrder then ConfirmPayment, every one answered FULFILLED (anything else stops
the run). ConfirmPayment waits for the supplier's answer: with 200 ms of latency a worker that
held a thread (or a process) per pending top-up would reach at most workers / 0.2 s = 10
orders/s; kamicore awaits the call on its event loop, so the ceiling is concurrency / 0.2 s.
The report gives that ceiling and the share of it reached.

Usage: .venv/bin/python bench/topup_bench.py [--quick] [--seconds S] [--concurrency N]
       [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

KEYS = 4
LATENCIES_MS = (0, 200)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run_round(target: str, keys: list[str], sku: str, tag: str, concurrency: int,
                    seconds: float) -> dict:
    import grpc

    from kamicore.v1 import orders_pb2, orders_pb2_grpc
    channels = [grpc.aio.insecure_channel(target) for _ in keys]
    stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]
    latencies: list[float] = []
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def buyer(index: int) -> None:
        stub = stubs[index % len(stubs)]
        metadata = (("authorization", f"Bearer {keys[index % len(keys)]}"),)
        while time.monotonic() < deadline and not failures:
            number = next(counter)
            started = time.perf_counter()
            created = await stub.CreateOrder(orders_pb2.CreateOrderRequest(
                idempotency_key=f"{tag}-{number}", recipient=f"+86138{number:08d}",
                buyer=orders_pb2.Buyer(account_id=f"buyer-{number}"),
                lines=[orders_pb2.OrderLine(sku_id=sku, quantity=1)]),
                metadata=metadata, timeout=30)
            if created.status != orders_pb2.CREATE_ORDER_STATUS_CREATED:
                failures.append(f"CreateOrder: {created.status}")
                return
            paid = await stub.ConfirmPayment(orders_pb2.ConfirmPaymentRequest(
                order_id=created.order.order_id, payment_reference=f"pay-{tag}-{number}",
                amount=created.order.total), metadata=metadata, timeout=30)
            if paid.status != orders_pb2.CONFIRM_PAYMENT_STATUS_FULFILLED:
                failures.append(f"ConfirmPayment: {paid.status}")
                return
            latencies.append(time.perf_counter() - started)

    began = time.monotonic()
    await asyncio.gather(*(buyer(index) for index in range(concurrency)))
    elapsed = time.monotonic() - began
    for channel in channels:
        await channel.close()
    if failures:
        raise SystemExit(f"an order was not fulfilled: {failures[0]}")
    return {"orders": len(latencies), "seconds": round(elapsed, 2),
            "orders_per_second": round(len(latencies) / elapsed, 1),
            "median_ms": round(statistics.median(latencies) * 1000, 1),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per setting")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "topups.json"))
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds

    from tests.supplier_harness import simulated_supplier
    from tests.topups_support import register, topup_server, topup_sku

    results = {"concurrency": args.concurrency, "workers": 2, "rounds": {}}
    with tempfile.TemporaryDirectory(prefix="topup-bench-") as base, \
            simulated_supplier() as supplier:
        server = topup_server(Path(base), "bench").start()
        try:
            admin = server.client(server.admin_key)
            sku = topup_sku(admin, "bench-topup")
            register(server, sku, supplier, "http", timeout_ms=5000)
            keys = [server.create_key("storefront", "web")[0] for _ in range(KEYS)]
            for latency_ms in LATENCIES_MS:
                supplier.configure(latency_ms=latency_ms)
                asyncio.run(run_round(server.target, keys, sku, f"warm-{latency_ms}",
                                      min(16, args.concurrency), 1.0))
                figures = asyncio.run(run_round(server.target, keys, sku, f"r-{latency_ms}",
                                                args.concurrency, seconds))
                if latency_ms:
                    ceiling = args.concurrency / (latency_ms / 1000)
                    figures["held_worker_ceiling_orders_per_second"] = round(
                        2 / (latency_ms / 1000), 1)
                    figures["latency_bound_orders_per_second"] = round(ceiling, 1)
                    figures["share_of_latency_bound"] = round(
                        figures["orders_per_second"] / ceiling, 2)
                results["rounds"][f"{latency_ms}ms"] = figures
                print(f"supplier latency {latency_ms} ms: {json.dumps(figures)}", flush=True)
        finally:
            exit_code = server.stop()
        if exit_code != 0:
            raise SystemExit(f"the server exited with {exit_code}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    slow = results["rounds"]["200ms"]
    print(f"top-ups: {results['rounds']['0ms']['orders_per_second']} orders/s at once, "
          f"{slow['orders_per_second']} orders/s with 200 ms supplier latency "
          f"({slow['share_of_latency_bound']} of the {slow['latency_bound_orders_per_second']}/s "
          f"a {args.concurrency}-order client allows; a worker held per top-up would cap it at "
          f"{slow['held_worker_ceiling_orders_per_second']}/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
