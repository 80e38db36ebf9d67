"""The scaling benchmark's two runs: pool scaling (throughput and p99 as the pool grows and as
workers go 1 -> 2) and the concurrency sweep (throughput and latency against calls in flight)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from common import log, percentile_ms
from driver import CHANNELS_PER_PROCESS, DriverPool
from processes import Children
from rpcs import BATCH_CODES, Requests
from scaling_store import SKU, Store, import_chunk_codes
from servers import KamicoreServer, start_nothing

pool_sizes_default = (10_000, 1_000_000, 10_000_000)
driver_processes = 2
CONCURRENCY_LEVELS = (1, 4, 16, 64, 256)


@dataclass(frozen=True)
class Work:
    """Per (pool size, workers) point: calls per figure (a figure also stops at its deadline)."""

    unary: int
    batch_calls: int
    orders: int
    deadline_seconds: float
    in_flight: tuple = (("unary", 64), ("batch", 2), ("orders", 32))

    def sold_codes(self) -> int:
        return self.unary + self.batch_calls * BATCH_CODES

    def scaled(self, fraction: float) -> Work:
        return Work(max(200, int(self.unary * fraction)), max(2, int(self.batch_calls * fraction)),
                    max(100, int(self.orders * fraction)), self.deadline_seconds, self.in_flight)


WORK_FULL = Work(unary=4_000, batch_calls=40, orders=1_500, deadline_seconds=10.0)
WORK_QUICK = Work(unary=1_000, batch_calls=6, orders=400, deadline_seconds=5.0)


def drive(pool: DriverPool, target: str, kind: str, requests: list, key: str, in_flight: int,
          deadline_seconds: float, items_per_call: int = 1, repeat: bool = False,
          decode: bool = True) -> dict:
    """`in_flight` calls over all driver processes; rate (items/s), percentiles, counts."""
    processes = max(1, min(pool.processes, in_flight))
    lanes = max(1, in_flight // processes)
    outcome = pool.drive(target, kind, requests, key, lanes, deadline_seconds, decode,
                         processes=processes, channels=min(CHANNELS_PER_PROCESS, lanes),
                         repeat=repeat)
    ordered = sorted(outcome.latencies)
    return {"calls": outcome.calls, "items": outcome.calls * items_per_call,
            "seconds": outcome.seconds,
            "rate": outcome.calls * items_per_call / outcome.seconds if outcome.seconds > 0
            else 0.0,
            "succeeded": outcome.succeeded, "errors": dict(outcome.errors),
            "in_flight": processes * lanes,
            "capped": outcome.calls < len(requests) if not repeat else True,
            "p50_ms": percentile_ms(ordered, 0.50), "p90_ms": percentile_ms(ordered, 0.90),
            "p99_ms": percentile_ms(ordered, 0.99)}


def measure_point(pool: DriverPool, target: str, store: Store, requests: Requests,
                  work: Work) -> dict:
    in_flight = dict(work.in_flight)
    pos, storefront = store.keys["pos"], store.keys["storefront"]
    figures = {}
    # a short warm-up of every path (connections, caches, page cache) before timing
    drive(pool, target, "redeem", requests.redeem(store.take_sold(100)), pos, 16, 5.0)
    drive(pool, target, "orders", requests.orders(50), storefront, 8, 5.0)
    figures["redeem"] = drive(pool, target, "redeem", requests.redeem(
        store.take_sold(work.unary)), pos, in_flight["unary"] * driver_processes,
        work.deadline_seconds)
    figures["batch"] = drive(pool, target, "batch", requests.batch(store.take_sold(
        work.batch_calls * BATCH_CODES)), pos, in_flight["batch"] * driver_processes,
        work.deadline_seconds, items_per_call=BATCH_CODES)
    figures["orders"] = drive(pool, target, "orders", requests.orders(work.orders), storefront,
                              in_flight["orders"] * driver_processes, work.deadline_seconds)
    for name, figure in figures.items():
        if figure["succeeded"] != figure["items"] or figure["errors"]:
            log(f"  WARNING {name}: {figure['succeeded']} of {figure['items']} succeeded, "
                f"errors {figure['errors']}")
    return figures


def run_pool_scaling(options, root: Path, children: Children, pool: DriverPool) -> dict:
    work = WORK_QUICK if options.quick else WORK_FULL
    sizes = [size for size in pool_sizes_default if size <= options.max_codes]
    if not sizes or sizes[-1] != options.max_codes:
        sizes.append(options.max_codes)
    if options.quick:
        sizes = [size for size in sizes if size <= 200_000] or [sizes[0]]
    workers_list = (1, 2)
    store = Store(root / "data")
    store.prepare()
    requests = Requests("s", SKU)
    import_deadline = time.monotonic() + options.import_seconds_max
    result = {"kind": "scaling", "quick": options.quick, "max_codes": options.max_codes,
              "import_chunk_codes": import_chunk_codes, "imports": [], "points": [],
              "work": work.__dict__, "capped": False}
    for size in sizes:
        needed = work.sold_codes() * len(workers_list) + 400 + work.orders * 2
        point_work = work
        if needed > size * 0.9:  # a small pool: the figures take a share of it
            point_work = work.scaled(size * 0.9 / needed)
        log(f"pool {size:,}: importing {size - store.codes:,} codes with the engine ...")
        step = store.import_to(size, deadline=import_deadline)
        result["imports"].append(step)
        log(f"  import: {step['codes']:,} codes in {step['seconds']:.1f} s = "
            f"{step['codes_per_second']:,.0f} codes/s")
        if step["capped"]:
            log(f"  import stopped at {store.codes:,} codes: --import-seconds-max "
                f"{options.import_seconds_max:.0f} s reached")
            result["capped"] = True
        sell_codes = point_work.sold_codes() * len(workers_list) + 200 * len(workers_list)
        sell_seconds = (store.sell(sell_codes - len(store.sold))
                        if len(store.sold) < sell_codes else 0.0)
        log(f"  sold {sell_codes:,} codes with the engine in {sell_seconds:.1f} s")
        data_bytes = (store.data_dir / "data.mdb").stat().st_size
        for workers in workers_list:
            log(f"  kamicore with {workers} worker(s) on {store.codes:,} codes ...")
            with KamicoreServer(children, store.data_dir, workers) as server:
                figures = measure_point(pool, server.target, store, requests, point_work)
            result["points"].append({"codes": store.codes, "workers": workers,
                                     "data_file_bytes": data_bytes, "figures": figures})
            log("   " + " · ".join(f"{name} {figure['rate']:,.0f}/s p99 {figure['p99_ms']:.1f} ms"
                                   for name, figure in figures.items()))
        if step["capped"]:
            break
    total = sum(step["codes"] for step in result["imports"])
    seconds = sum(step["seconds"] for step in result["imports"])
    result["import_codes_per_second"] = total / seconds if seconds else 0.0
    result["codes_reached"] = store.codes
    return result


def run_concurrency(options, root: Path, children: Children, pool: DriverPool) -> dict:
    levels = (1, 16, 64) if options.quick else CONCURRENCY_LEVELS
    seconds = 2.0 if options.quick else 4.0
    store = Store(root / "data")
    store.prepare()
    store.import_to(60_000 if options.quick else 200_000)
    # unary Redeem does ~1,000-1,500/s here: enough distinct SOLD codes for every level
    per_level = 4_000 if options.quick else 9_000
    store.sell(per_level * len(levels) + 2_200)  # + verify codes + warm-up
    verify_codes = store.sold[-2_000:]
    store.sold = store.sold[:-2_000]
    requests = Requests("c", SKU)
    pos = store.keys["pos"]
    result = {"kind": "concurrency", "quick": options.quick, "pool_codes": store.codes,
              "seconds_per_point": seconds, "points": []}
    nothing, _ = start_nothing(children, 2)
    with KamicoreServer(children, store.data_dir, 2) as server:
        # warm up both servers
        drive(pool, server.target, "redeem", requests.redeem(store.take_sold(200)), pos, 16, 3.0)
        drive(pool, nothing, "redeem", requests.redeem(verify_codes), pos, 16, 2.0, repeat=True,
              decode=False)
        for level in levels:
            series = [
                ("kamicore Redeem (distinct codes)", server.target, "redeem",
                 requests.redeem(store.take_sold(per_level)), False, True),
                ("kamicore VerifyCode", server.target, "verify", requests.verify(verify_codes),
                 True, True),
                ("do-nothing (empty replies)", nothing, "redeem", requests.redeem(verify_codes),
                 True, False),
            ]
            for name, target, kind, batch, repeat, decode in series:
                figure = drive(pool, target, kind, batch, pos, level, seconds, repeat=repeat,
                               decode=decode)
                figure["series"] = name
                result["points"].append(figure)
                log(f"  {name} @ {figure['in_flight']} in flight: {figure['rate']:,.0f}/s, "
                    f"p50 {figure['p50_ms']:.1f} p99 {figure['p99_ms']:.1f} ms"
                    + (f" errors {figure['errors']}" if figure["errors"] else ""))
    return result
