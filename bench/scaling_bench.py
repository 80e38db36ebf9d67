"""Scaling benchmark: kamicore's throughput and p99 as the code pool grows and as workers go 1 -> 2,
and (with --concurrency) throughput and latency against the number of calls in flight.

Pool scaling (the default): one data dir under bench/results/tmp (git-ignored, removed at the
end) grows 10k -> 1M -> 10M codes (capped by --max-codes). Codes are imported straight into the
data dir with the engine, in chunks of 10,000 (one durable commit each, what `kamicore import`
does), before the server starts; the import rate of every step is reported. At each pool size:
the engine sells (reserve + confirm) the codes the figures will redeem, then for workers = 1 and 2
kamicore is started (`kamicore serve --workers W` on free 127.0.0.1 ports) and a driver of 2
processes (grpc.aio, requests serialised before timing) measures
  - Redeem (unary) of distinct SOLD codes: calls/s, 64 in flight per process;
  - RedeemBatch of 1,000 distinct SOLD codes per call: codes/s, 2 in flight per process;
  - CreateOrder + ConfirmPayment of one-code orders: orders/s, 32 in flight per process;
every call a durable write; latency percentiles (p50/p90/p99) over every call of the figure.

Concurrency (--concurrency): one kamicore (2 workers, a 200k pool) and the do-nothing grpc.aio
server of bench/server_bench.py (2 processes) are driven at 1, 4, 16, 64 and 256 calls in flight
with unary Redeem of distinct codes and VerifyCode (kamicore) and the same Redeem requests
(do-nothing: empty replies), each point a few seconds.

Results go to a JSON file (--out) that bench/report.py turns into plots. Every process this
starts is stopped again, also on errors, Ctrl-C, SIGTERM and the run limit (--time-limit).

Usage: .venv/bin/python bench/scaling_bench.py [--quick] [--max-codes N] [--out FILE]
       .venv/bin/python bench/scaling_bench.py --concurrency [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("KAMICORE_EXT_DIR", str(REPO / "ext"))

import server_bench  # noqa: E402  (read-only reuse: processes, health wait, do-nothing server)
from server_bench import Children, code_of, free_port, wait_serving  # noqa: E402

TEMP_PARENT = REPO / "bench" / "results" / "tmp"  # git-ignored
HOST = "127.0.0.1"
SKU = "scale-gift-50"
CURRENCY = "CNY"
PRICES = {"web": 1_000_000, "partner": 950_000}
TERMINAL = "T-SCALE"
CHANNEL = "web"
import_chunk_codes = 10_000  # codes per engine call (one durable commit), as `kamicore import`
sell_order_codes = 10_000  # the largest order
pool_sizes_default = (10_000, 1_000_000, 10_000_000)
driver_processes = 2
channels_per_process = 4  # SO_REUSEPORT spreads connections over the workers
call_timeout_seconds = 30.0
batch_codes = 1_000

METHOD_REDEEM = "/kamicore.v1.Redemption/Redeem"
METHOD_BATCH = "/kamicore.v1.Redemption/RedeemBatch"
METHOD_VERIFY = "/kamicore.v1.Redemption/VerifyCode"
METHOD_CREATE = "/kamicore.v1.Orders/CreateOrder"
METHOD_CONFIRM = "/kamicore.v1.Orders/ConfirmPayment"
METHOD_HEALTH = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True)
class Work:
    """Per (pool size, workers) point: calls per figure (a figure also stops at its deadline)."""

    unary: int
    batch_calls: int
    orders: int
    deadline_seconds: float
    in_flight: tuple = (("unary", 64), ("batch", 2), ("orders", 32))

    def sold_codes(self) -> int:
        return self.unary + self.batch_calls * batch_codes

    def scaled(self, fraction: float) -> "Work":
        return Work(max(200, int(self.unary * fraction)), max(2, int(self.batch_calls * fraction)),
                    max(100, int(self.orders * fraction)), self.deadline_seconds, self.in_flight)


WORK_FULL = Work(unary=4_000, batch_calls=40, orders=1_500, deadline_seconds=10.0)
WORK_QUICK = Work(unary=1_000, batch_calls=6, orders=400, deadline_seconds=5.0)
CONCURRENCY_LEVELS = (1, 4, 16, 64, 256)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(message)


def percentiles_ms(latencies: list[float]) -> dict:
    ordered = sorted(latencies)

    def at(fraction: float) -> float:
        if not ordered:
            return 0.0
        return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1] * 1000
    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99)}


# -- the driver: processes with grpc.aio clients ------------------------------------------------

def driver_job(job: dict) -> dict:
    """One driver process's share of one figure (runs in a spawned process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    return asyncio.run(_driver_job(job))


async def _driver_job(job: dict) -> dict:
    import grpc
    from kamicore.v1 import orders_pb2, redemption_pb2
    options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 2**24)]
    channels = [grpc.aio.insecure_channel(job["target"], options=options)
                for _ in range(job["channels"])]
    metadata = (("authorization", f"Bearer {job['key']}"),)
    kind, requests, repeat = job["kind"], job["requests"], job["repeat"]
    clock = time.perf_counter
    latencies: list[float] = []
    replies: list = []
    errors: collections.Counter = collections.Counter()
    try:
        for channel in channels:  # connect before the clock starts
            await asyncio.wait_for(channel.channel_ready(), 20)
            await channel.unary_unary(METHOD_HEALTH)(b"", timeout=20)
        method = {"redeem": METHOD_REDEEM, "batch": METHOD_BATCH, "verify": METHOD_VERIFY,
                  "orders": METHOD_CREATE}[kind]
        calls = [channel.unary_unary(method) for channel in channels]
        confirms = [channel.unary_unary(METHOD_CONFIRM) for channel in channels]
        counter = iter(range(10**12)) if repeat else iter(range(len(requests)))
        keep = job["decode"]
        # start together with the other processes: a wall-clock start time set by the parent
        await asyncio.sleep(max(0.0, job["start_at"] - time.time()))
        started_wall = time.time()
        deadline = clock() + job["deadline_seconds"]

        async def lane(number: int) -> None:
            call, confirm = calls[number % len(calls)], confirms[number % len(calls)]
            for index in counter:
                if clock() > deadline:
                    return
                request = requests[index % len(requests)]
                before = clock()
                try:
                    if kind == "orders":
                        created = await call(request[0], metadata=metadata,
                                             timeout=call_timeout_seconds)
                        confirmed = await confirm(request[1], metadata=metadata,
                                                  timeout=call_timeout_seconds)
                        reply = (created, confirmed)
                    else:
                        reply = await call(request, metadata=metadata,
                                           timeout=call_timeout_seconds)
                    if keep:
                        replies.append(reply)
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                latencies.append(clock() - before)

        await asyncio.gather(*(lane(number) for number in range(job["lanes"])))
        finished_wall = time.time()
    finally:
        for channel in channels:
            await channel.close()
    succeeded = 0
    if keep:
        if kind == "redeem":
            succeeded = sum(redemption_pb2.RedeemResponse.FromString(reply).status
                            == redemption_pb2.REDEEM_STATUS_REDEEMED for reply in replies)
        elif kind == "batch":
            succeeded = sum(result.status == redemption_pb2.REDEEM_STATUS_REDEEMED
                            for reply in replies
                            for result in redemption_pb2.RedeemBatchResponse.FromString(
                                reply).results)
        elif kind == "verify":
            succeeded = sum(redemption_pb2.VerifyCodeResponse.FromString(reply).status
                            == redemption_pb2.VERIFY_STATUS_FOUND for reply in replies)
        else:
            succeeded = sum(
                orders_pb2.CreateOrderResponse.FromString(created).status
                == orders_pb2.CREATE_ORDER_STATUS_CREATED
                and orders_pb2.ConfirmPaymentResponse.FromString(confirmed).status
                == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID for created, confirmed in replies)
    return {"calls": len(latencies), "latencies": latencies, "errors": dict(errors),
            "succeeded": succeeded, "started": started_wall, "finished": finished_wall}


class Driver:
    """Spawned driver processes, reused for every figure of the run."""

    def __init__(self, processes: int = driver_processes):
        self.processes = processes
        self.pool = concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"))
        # spawn them now (importing grpc takes a while) so the first figure is not late
        list(self.pool.map(_warm, range(processes)))

    def run(self, target: str, kind: str, requests: list, key: str, in_flight: int,
            deadline_seconds: float, items_per_call: int = 1, repeat: bool = False,
            decode: bool = True) -> dict:
        """`in_flight` calls over all processes; returns rate (items/s), percentiles, counts."""
        processes = max(1, min(self.processes, in_flight))
        lanes = max(1, in_flight // processes)
        shares = [requests[index::processes] for index in range(processes)]
        start_at = time.time() + 1.0
        jobs = [{"target": target, "kind": kind, "requests": share, "key": key,
                 "lanes": lanes, "channels": min(channels_per_process, lanes),
                 "deadline_seconds": deadline_seconds, "repeat": repeat, "decode": decode,
                 "start_at": start_at} for share in shares]
        futures = [self.pool.submit(driver_job, job) for job in jobs]
        results = [future.result(timeout=deadline_seconds + call_timeout_seconds + 60)
                   for future in futures]
        calls = sum(result["calls"] for result in results)
        seconds = (max(result["finished"] for result in results)
                   - min(result["started"] for result in results))
        latencies = [value for result in results for value in result["latencies"]]
        errors: collections.Counter = collections.Counter()
        for result in results:
            errors.update(result["errors"])
        figure = {"calls": calls, "items": calls * items_per_call, "seconds": seconds,
                  "rate": calls * items_per_call / seconds if seconds > 0 else 0.0,
                  "succeeded": sum(result["succeeded"] for result in results),
                  "errors": dict(errors), "in_flight": processes * lanes,
                  "capped": calls < len(requests) if not repeat else True,
                  **percentiles_ms(latencies)}
        return figure

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _warm(_: int) -> int:
    import grpc  # noqa: F401
    from kamicore.v1 import orders_pb2, redemption_pb2  # noqa: F401
    return os.getpid()


# -- the data dir: catalog, keys, codes, sales -------------------------------------------------

class Store:
    """A kamicore data dir filled directly with the engine (the server is not running)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.codes = 0  # imported so far
        self.sold: list[str] = []  # plaintexts of SOLD codes not used yet
        self.keys: dict[str, str] = {}
        self.orders_sold = 0

    def engine(self):
        from kamicore import Engine
        return Engine(self.data_dir)

    def prepare(self, skus: dict[str, int] | None = None) -> None:
        """SKUs (with prices for web and partner) and one key per role."""
        from kamicore import auth, catalog
        from kamicore.cli import sku_message
        with self.engine() as engine:
            for sku_id in skus or {SKU: 0}:
                catalog.Catalog(engine).create(sku_message(
                    sku_id, f"Bench {sku_id}", CURRENCY, "50.00",
                    [f"{channel}={micros / 1e6:.2f}" for channel, micros in PRICES.items()],
                    0, 0, [], "code"), actor="bench")
            for role, binding in (("pos", TERMINAL), ("storefront", CHANNEL), ("partner", ""),
                                  ("admin", "")):
                self.keys[role] = auth.create_key(engine, role, binding=binding,
                                                  name="scaling bench")[0]

    def import_to(self, total: int, sku: str = SKU, prefix: str = "SCAL",
                  deadline: float = float("inf")) -> dict:
        """Import codes until the store holds `total` (or the deadline passes); the rate."""
        from kamicore.statuses import ImportStatus
        first = self.codes
        started = time.perf_counter()
        with self.engine() as engine:
            while self.codes < total and time.monotonic() < deadline:
                count = min(import_chunk_codes, total - self.codes)
                codes = [code_of(prefix, number) for number in
                         range(self.codes, self.codes + count)]
                result = engine.import_codes(sku, f"batch-{self.codes // 1_000_000}", codes,
                                             supplier="bench-supplier",
                                             unit_cost_micros=900_000, actor="bench:import")
                expect(result.status == ImportStatus.OK and result.imported == count,
                       f"import: {result.status!r}, {result.imported} of {count}")
                self.codes += count
                if self.codes // 1_000_000 != (self.codes - count) // 1_000_000:
                    log(f"  imported {self.codes:,} codes "
                        f"({(self.codes - first) / (time.perf_counter() - started):,.0f}/s)")
        seconds = time.perf_counter() - started
        return {"from": first, "to": self.codes, "codes": self.codes - first, "seconds": seconds,
                "codes_per_second": (self.codes - first) / seconds if seconds else 0.0,
                "capped": self.codes < total}

    def sell(self, count: int, sku: str = SKU) -> float:
        """Reserve + confirm `count` codes with the engine; their plaintexts join self.sold."""
        from kamicore import engine as engine_module
        from kamicore.statuses import ConfirmStatus, ReserveStatus
        per_line = engine_module.codes_per_line_max
        started = time.perf_counter()
        with self.engine() as engine:
            for start in range(0, count, sell_order_codes):
                size = min(sell_order_codes, count - start)
                lines = [(sku, per_line)] * (size // per_line) + (
                    [(sku, size % per_line)] if size % per_line else [])
                self.orders_sold += 1
                order_id = f"bench-sale-{sku}-{self.orders_sold}"
                [reserved] = engine.reserve([(order_id, lines, 3600)])
                expect(reserved.status == ReserveStatus.RESERVED, f"sell: {reserved.status!r}")
                [confirmed] = engine.confirm([order_id])
                expect(confirmed.status == ConfirmStatus.SOLD, f"sell: {confirmed.status!r}")
                self.sold.extend(engine.order(order_id, reveal=True).plaintexts)
        return time.perf_counter() - started

    def take_sold(self, count: int) -> list[str]:
        expect(len(self.sold) >= count, f"out of SOLD codes ({len(self.sold)} < {count})")
        codes, self.sold = self.sold[:count], self.sold[count:]
        return codes


class Requests:
    """Serialised requests: distinct request ids, distinct order keys."""

    def __init__(self, tag: str):
        self.tag = tag
        self.number = 0

    def _next(self) -> int:
        self.number += 1
        return self.number

    def redeem(self, codes: list[str]) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        return [redemption_pb2.RedeemRequest(code=code, request_id=f"{self.tag}{self._next():011d}")
                .SerializeToString() for code in codes]

    def batch(self, codes: list[str]) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        calls = []
        for start in range(0, len(codes), batch_codes):
            items = [redemption_pb2.RedeemRequest(code=code,
                                                  request_id=f"{self.tag}{self._next():011d}")
                     for code in codes[start:start + batch_codes]]
            calls.append(redemption_pb2.RedeemBatchRequest(items=items).SerializeToString())
        return calls

    def verify(self, codes: list[str]) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        return [redemption_pb2.VerifyCodeRequest(code=code).SerializeToString() for code in codes]

    def orders(self, count: int, sku: str = SKU) -> list[tuple[bytes, bytes]]:
        from kamicore.v1 import common_pb2, orders_pb2
        pairs = []
        for _ in range(count):
            key = f"{self.tag}-order-{self._next()}"
            create = orders_pb2.CreateOrderRequest(
                idempotency_key=key, buyer=orders_pb2.Buyer(account_id=f"buyer-{self.number % 997}"),
                lines=[orders_pb2.OrderLine(sku_id=sku, quantity=1)], hold_seconds=900)
            confirm = orders_pb2.ConfirmPaymentRequest(
                order_id=f"storefront:{CHANNEL}/{key}", payment_reference=f"pay-{key}",
                amount=common_pb2.Money(currency=CURRENCY, amount_micros=PRICES[CHANNEL]))
            pairs.append((create.SerializeToString(), confirm.SerializeToString()))
        return pairs


class Server:
    """kamicore serve on free ports over a data dir; stopped with SIGTERM (it drains)."""

    def __init__(self, children: Children, data_dir: Path, workers: int, name: str = "kamicore"):
        self.children, self.workers, self.name = children, workers, name
        self.data_dir = Path(data_dir).resolve()  # the server runs in the log dir
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def __enter__(self) -> "Server":
        self.process = self.children.start(self.name, [
            sys.executable, "-m", "kamicore.cli", "--data-dir", str(self.data_dir), "serve",
            "--workers", str(self.workers), "--listen", self.target,
            "--metrics-listen", f"{HOST}:{self.metrics_port}"])
        wait_serving(self.process, self.target, self.name, self.children, health=True)
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.children, self.process)


def stop_process(children: Children, process: subprocess.Popen | None) -> None:
    """SIGTERM, wait, then SIGKILL its process group; forget it."""
    if process is None:
        return
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            log(f"process {process.pid} did not stop in 30 s; killing it")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    children.processes = [(name, child) for name, child in children.processes
                          if child is not process]


def start_nothing(children: Children, workers: int = 2) -> str:
    """bench/server_bench.py's do-nothing grpc.aio server, `workers` processes on one port."""
    port = free_port()
    target = f"{HOST}:{port}"
    for number in range(workers):
        name = f"do-nothing-{number}"
        process = children.start(name, [sys.executable, server_bench.__file__, "--serve-nothing",
                                        target])
        wait_serving(process, target, name, children, health=False)
    return target


# -- the two benchmarks --------------------------------------------------------------------------

def measure_point(driver: Driver, target: str, store: Store, requests: Requests,
                  work: Work) -> dict:
    in_flight = dict(work.in_flight)
    figures = {}
    # a short warm-up of every path (connections, caches, page cache) before timing
    driver.run(target, "redeem", requests.redeem(store.take_sold(100)), store.keys["pos"], 16,
               5.0)
    driver.run(target, "orders", requests.orders(50), store.keys["storefront"], 8, 5.0)
    figures["redeem"] = driver.run(target, "redeem", requests.redeem(store.take_sold(work.unary)),
                                   store.keys["pos"], in_flight["unary"] * driver_processes,
                                   work.deadline_seconds)
    figures["batch"] = driver.run(target, "batch", requests.batch(store.take_sold(
        work.batch_calls * batch_codes)), store.keys["pos"], in_flight["batch"] * driver_processes,
        work.deadline_seconds, items_per_call=batch_codes)
    figures["orders"] = driver.run(target, "orders", requests.orders(work.orders),
                                   store.keys["storefront"],
                                   in_flight["orders"] * driver_processes, work.deadline_seconds)
    for name, figure in figures.items():
        if figure["succeeded"] != figure["items"] or figure["errors"]:
            log(f"  WARNING {name}: {figure['succeeded']} of {figure['items']} succeeded, "
                f"errors {figure['errors']}")
    return figures


def run_pool_scaling(options, root: Path, children: Children, driver: Driver) -> dict:
    work = WORK_QUICK if options.quick else WORK_FULL
    sizes = [size for size in pool_sizes_default if size <= options.max_codes]
    if not sizes or sizes[-1] != options.max_codes:
        sizes.append(options.max_codes)
    if options.quick:
        sizes = [size for size in sizes if size <= 200_000] or [sizes[0]]
    workers_list = (1, 2)
    store = Store(root / "data")
    store.prepare()
    requests = Requests("s")
    import_deadline = time.monotonic() + options.import_seconds_max
    result = {"kind": "scaling", "quick": options.quick, "max_codes": options.max_codes,
              "import_chunk_codes": import_chunk_codes, "imports": [], "points": [],
              "work": work.__dict__, "capped": False}
    for size in sizes:
        needed = work.sold_codes() * len(workers_list) + 400 + work.orders * 2
        point_work = work
        if needed > size * 0.9:  # a small pool: the figures take a share of it
            point_work = work.scaled(size * 0.9 / needed)
            needed = point_work.sold_codes() * len(workers_list) + 400 + point_work.orders * 2
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
        sell_seconds = store.sell(sell_codes - len(store.sold) if len(store.sold) < sell_codes
                                  else 0) if len(store.sold) < sell_codes else 0.0
        log(f"  sold {sell_codes:,} codes with the engine in {sell_seconds:.1f} s")
        data_bytes = (store.data_dir / "data.mdb").stat().st_size
        for workers in workers_list:
            log(f"  kamicore with {workers} worker(s) on {store.codes:,} codes ...")
            with Server(children, store.data_dir, workers) as server:
                figures = measure_point(driver, server.target, store, requests, point_work)
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


def run_concurrency(options, root: Path, children: Children, driver: Driver) -> dict:
    levels = (1, 16, 64) if options.quick else CONCURRENCY_LEVELS
    seconds = 2.0 if options.quick else 4.0
    store = Store(root / "data")
    store.prepare()
    pool = 60_000 if options.quick else 200_000
    store.import_to(pool)
    # unary Redeem does ~1,000-1,500/s here: enough distinct SOLD codes for every level
    per_level = 4_000 if options.quick else 9_000
    store.sell(per_level * len(levels) + 2_200)  # + verify codes + warm-up
    verify_codes = store.sold[-2_000:]
    store.sold = store.sold[:-2_000]
    requests = Requests("c")
    result = {"kind": "concurrency", "quick": options.quick, "pool_codes": store.codes,
              "seconds_per_point": seconds, "points": []}
    nothing = start_nothing(children)
    with Server(children, store.data_dir, 2) as server:
        # warm up both servers
        driver.run(server.target, "redeem", requests.redeem(store.take_sold(200)),
                   store.keys["pos"], 16, 3.0)
        driver.run(nothing, "redeem", requests.redeem(verify_codes), store.keys["pos"], 16, 2.0,
                   repeat=True, decode=False)
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
                figure = driver.run(target, kind, batch, store.keys["pos"], level, seconds,
                                    repeat=repeat, decode=decode)
                figure["series"] = name
                result["points"].append(figure)
                log(f"  {name} @ {figure['in_flight']} in flight: {figure['rate']:,.0f}/s, "
                    f"p50 {figure['p50_ms']:.1f} p99 {figure['p99_ms']:.1f} ms"
                    + (f" errors {figure['errors']}" if figure["errors"] else ""))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", action="store_true",
                        help="the concurrency sweep instead of pool scaling")
    parser.add_argument("--quick", action="store_true", help="a small, short run")
    parser.add_argument("--max-codes", type=int, default=10_000_000,
                        help="the largest pool (default 10,000,000)")
    parser.add_argument("--import-seconds-max", type=float, default=600.0,
                        help="stop growing the pool when importing has taken this long")
    parser.add_argument("--time-limit", type=int, default=1500,
                        help="seconds; past it everything is stopped")
    parser.add_argument("--out", default=None, help="JSON results (default: print)")
    options = parser.parse_args()

    def stop(signal_number, frame):
        raise SystemExit(143 if signal_number == signal.SIGTERM else 124)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(options.time_limit)
    TEMP_PARENT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="scaling-bench-", dir=TEMP_PARENT))
    children = Children(root)
    driver = None
    started = time.perf_counter()
    try:
        driver = Driver()
        run = run_concurrency if options.concurrency else run_pool_scaling
        result = run(options, root, children, driver)
    except BaseException:
        for name, _ in children.processes:
            log(f"{name} log (tail):\n{children.log_tail(name)}")
        raise
    finally:
        signal.alarm(0)
        if driver is not None:
            driver.close()
        children.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    text = json.dumps(result, indent=1)
    if options.out:
        Path(options.out).parent.mkdir(parents=True, exist_ok=True)
        Path(options.out).write_text(text)
        log(f"wrote {options.out} ({result['seconds']:.0f} s)")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
