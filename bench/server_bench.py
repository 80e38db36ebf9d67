"""Server benchmark: what a kamicore gRPC call costs end to end, against a server that does nothing.

One run, everything on 127.0.0.1, on a fresh data dir under bench/results/tmp (git-ignored,
removed at the end), with every process it starts stopped again (also on errors, Ctrl-C, SIGTERM
and the run's time limit):

- kamicore: `python -m kamicore.cli --data-dir D serve --workers 2` on free ports (gRPC and
  /metrics), waited for until fresh connections answer health SERVING; seeded through the CLI
  (`sku create` with prices for "web" and "partner", `keys create` for a pos key on terminal
  T-01 and a storefront key on channel web) and through its own RPCs (the admin key the first
  start writes imports codes over Inventory/ImportCodes; the storefront sells most of them with
  CreateOrder + ConfirmPayment of 10,000 codes each, whose replies deliver the plaintexts that
  the Redeem figures then use);
- do-nothing: a grpc.aio server with the same worker count (2 processes on SO_REUSEPORT) and a
  generic handler answering every method with empty bytes (one empty message per request on a
  stream). It is the ceiling of the transport, the Python gRPC stack and the client on this
  machine: kamicore can only approach it.

Figures, each against kamicore and then do-nothing, in R rounds after a warm-up round, every
round running every figure (the machine is shared: drift hits both servers of a pair alike, so
the kamicore / do-nothing ratio is taken round by round and its median reported); throughput is
the median over rounds, latency percentiles are over every call of every round:

- h2load (nghttp2-client, installed with apt when missing): unary Redeem and VerifyCode with the
  same settings against both servers, a fixed number of requests so that h2load waits for every
  answer (with -D it drops the calls in flight when time is up; cancelled calls are another
  load, and at the time of writing one left a kamicore worker's group-commit writer dead).
  h2load sends ONE body, so the Redeem repeats one request id on one SOLD code: the first call
  is made before h2load starts and every h2load call is an idempotent replay (the engine finds
  the request id and answers the first answer, REDEEMED, again). h2load counts HTTP status
  only, so kamicore's own /metrics (kamicore_rpcs_total delta: code="OK" of all codes) says how
  many calls succeeded. h2load reports a mean latency, not percentiles.
- a driver of P processes (multiprocessing, spawn), each with grpc.aio channels (one HTTP/2
  connection each) and requests serialised before timing starts, started together on a barrier:
  Redeem of distinct SOLD codes (unary; every call is a durable write), RedeemBatch of 1,000
  distinct codes per call, RedeemStream (long-lived streams, a window of requests in flight on
  each; latency from write to answer), and CreateOrder + ConfirmPayment pairs of distinct
  one-code orders (latency per order: both calls). Every kamicore reply is decoded after the
  timing ends and counted (REDEEMED, CREATED + PAID): a wrong answer ends the run. A job stops
  at its deadline and then reports what it finished.

Beside throughput and latency: the CPU time the server's processes used per call (from /proc),
which says what a call costs the server whatever else the shared machine is doing, and
kamicore's own view from its /metrics (its RPC latency histogram; group commits per second,
operations per commit, time per commit).

The machine has 2 cores shared by server, client and h2load: every figure is also bounded by
the client's CPU, which is what the do-nothing column shows.

Usage: make bench-server, or .venv/bin/python bench/server_bench.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import common  # noqa: E402 - bench/common.py, beside this script

REPO = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO / "bench" / "RESULTS.md"
TEMP_PARENT = REPO / "bench" / "results" / "tmp"  # git-ignored
SECTION_HEADING = "## Server"  # this script's part of RESULTS.md: from here to the end
HOST = "127.0.0.1"

# targets
redeem_unary_ratio_target = 0.8  # h2load unary Redeem, kamicore / do-nothing
redeem_batch_target_codes_per_second = 150_000
orders_target_per_second = 3_000

SKU = "bench-gift-50"
CURRENCY = "CNY"
FACE_VALUE_MICROS = 50_000_000
PRICES = {"web": 1_000_000, "partner": 950_000}  # per code; one-code orders pay 1.00 CNY
TERMINAL = "T-01"
CHANNEL = "web"
WORKERS = 2
import_chunk_codes = 10_000  # the server's largest chunk
seed_order_codes = 10_000  # the largest order: 10 lines of 1,000
seed_parallel = 4  # concurrent seeding streams and orders (connections land on either worker)
batch_codes = 1_000  # RedeemBatch: the largest batch
server_start_timeout_seconds = 60.0
server_stop_timeout_seconds = 30.0
call_timeout_seconds = 30.0  # a call that takes longer means the server is stuck

METHOD_REDEEM = "/kamicore.v1.Redemption/Redeem"
METHOD_BATCH = "/kamicore.v1.Redemption/RedeemBatch"
METHOD_STREAM = "/kamicore.v1.Redemption/RedeemStream"
METHOD_VERIFY = "/kamicore.v1.Redemption/VerifyCode"
METHOD_CREATE = "/kamicore.v1.Orders/CreateOrder"
METHOD_CONFIRM = "/kamicore.v1.Orders/ConfirmPayment"
METHOD_IMPORT = "/kamicore.v1.Inventory/ImportCodes"
METHOD_HEALTH = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True)
class Plan:
    """How much work. Counts are per round and split evenly over the driver processes."""

    rounds: int
    h2load_requests: int  # per h2load run
    unary: int  # distinct Redeem calls
    batch_calls: int  # RedeemBatch calls of batch_codes codes
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
                       for count, size in ((self.unary, 1), (self.batch_calls, batch_codes),
                                           (self.stream, 1)))

    def available_codes(self, clients: int) -> int:
        return self.rounds * self.orders + self.warmup(self.orders, clients)


# sized for ~4 s per kamicore figure on this 2-core machine (kamicore does ~1,000 distinct
# Redeem/s, ~45,000 RedeemBatch codes/s, ~2,000 stream items/s, ~450 orders/s there)
PLAN_FULL = Plan(rounds=3, h2load_requests=10_000, unary=5_000, batch_calls=120, stream=10_000,
                 orders=2_000, job_deadline_seconds=20.0, run_limit_seconds=600)
PLAN_QUICK = Plan(rounds=1, h2load_requests=3_000, unary=2_000, batch_calls=40, stream=4_000,
                  orders=600, job_deadline_seconds=10.0, run_limit_seconds=240)
warmup_fraction = 0.1  # round 0: this share of every count, not measured

# the driver: per process
DRIVER_PROCESSES = 2
# HTTP/2 connections per process. SO_REUSEPORT spreads connections, not calls, by a hash: with
# 4 connections over 2 workers one worker gets all of them 1 time in 8 (and 3 of 4 half the
# time); with 8 and more the split is rarely worse than 5:3.
CHANNELS_PER_PROCESS = 4
IN_FLIGHT = {"unary": 64, "batch": 4, "orders": 32}  # concurrent calls per process
STREAMS_PER_PROCESS = 4
STREAM_WINDOW = 64  # requests written ahead of their answers on one stream

# h2load, the same settings against both servers: 128 calls in flight over 16 connections (see
# CHANNELS_PER_PROCESS for why not 4)
H2LOAD_OPTIONS = ["-c", "16", "-m", "8", "-t", "1"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expect(condition: bool, message: str) -> None:
    """A wrong answer ends the run (not an assert: python -O drops those)."""
    if not condition:
        raise RuntimeError(message)


def code_of(prefix: str, number: int) -> str:
    """A code in the usual dashed groups, 19-20 characters."""
    return f"{prefix}-{number >> 32 & 0xFFFF:04X}-{number >> 16 & 0xFFFF:04X}-{number & 0xFFFF:04X}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def percentile_ms(ordered: list, fraction: float) -> float:
    """Nearest rank of an ascending list of seconds, in ms."""
    if not ordered:
        return 0.0
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1] * 1000


# -- the do-nothing server (this script run with --serve-nothing HOST:PORT) --------------------

def serve_nothing(listen: str) -> None:
    """One process of the do-nothing server: every method answers empty bytes."""
    import grpc

    async def unary(request, context):
        return b""

    async def stream(request_iterator, context):
        async for _ in request_iterator:
            yield b""

    class Nothing(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            if handler_call_details.method.endswith("Stream"):
                return grpc.stream_stream_rpc_method_handler(stream)
            return grpc.unary_unary_rpc_method_handler(unary)

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1),
                                          ("grpc.max_receive_message_length", 4 * 2**20),
                                          ("grpc.max_send_message_length", 4 * 2**20)])
        server.add_generic_rpc_handlers((Nothing(),))
        server.add_insecure_port(listen)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stopping.set)
        print("do-nothing serving", flush=True)
        await stopping.wait()
        await server.stop(1)

    asyncio.run(main())


# -- processes this run starts -------------------------------------------------------------------

def clean_environment() -> dict:
    """This environment without anything that would change the server's settings."""
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("KAMICORE_") and name != "PROMETHEUS_MULTIPROC_DIR"}
    environment["PYTHONUNBUFFERED"] = "1"
    if "KAMICORE_EXT_DIR" in os.environ:
        environment["KAMICORE_EXT_DIR"] = os.environ["KAMICORE_EXT_DIR"]
    return environment


class Children:
    """Every server process tree this run starts, each in its own session (so a Ctrl-C on the
    terminal reaches only this script, which then stops them in order)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as output:
            process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=clean_environment(),
                                       cwd=self.log_dir, start_new_session=True)
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, characters: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-characters:] if path.exists() else ""

    def stop_all(self) -> None:
        """SIGTERM to each process (kamicore's supervisor drains and stops its workers), then
        SIGKILL to the process group of any that outlives the timeout."""
        for _, process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + server_stop_timeout_seconds
        for name, process in self.processes:
            try:
                code = process.wait(max(0.1, deadline - time.monotonic()))
                if code not in (0, -signal.SIGTERM):
                    log(f"{name} exited with {code}")
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {server_stop_timeout_seconds:.0f} s; killing it")
            # its whole group: kamicore's workers are in the supervisor's session
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self.processes.clear()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used so far: user + system, every thread)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]),
                                          (int(fields[11]) + int(fields[12])) / CLOCK_TICKS)
    return table


def descendants(roots: list[int], table: dict | None = None) -> list[int]:
    """`roots` and every process below them."""
    table = table if table is not None else _process_table()
    found, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in table.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return sorted(pid for pid in found if pid in table)


def cpu_seconds(roots: list[int]) -> float:
    """CPU time used so far by the process trees under `roots` (a server's processes)."""
    table = _process_table()
    return sum(table[pid][1] for pid in descendants(roots, table))


# -- the driver: P processes with grpc.aio clients ---------------------------------------------

@dataclass
class Job:
    """One driver process's share of one figure."""

    target: str
    kind: str  # unary, batch, stream or orders
    requests: list  # serialised requests; orders: (create, confirm) pairs
    key: str
    deadline_seconds: float
    decode: bool  # kamicore: decode and count the replies after timing


def driver_main(connection, barrier) -> None:
    """A driver process: runs jobs sent over `connection` until it gets None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    while True:
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = asyncio.run(run_job(job, barrier))
        except BaseException as error:  # report it: the parent ends the run
            with contextlib.suppress(Exception):
                barrier.abort()
            result = {"error": f"{type(error).__name__}: {error}"}
        connection.send(result)


async def run_job(job: Job, barrier) -> dict:
    import grpc
    options = [("grpc.use_local_subchannel_pool", 1),  # one connection per channel
               ("grpc.max_receive_message_length", 4 * 2**20)]
    channels = [grpc.aio.insecure_channel(job.target, options=options)
                for _ in range(CHANNELS_PER_PROCESS)]
    metadata = (("authorization", f"Bearer {job.key}"),)
    clock = time.perf_counter
    errors: collections.Counter = collections.Counter()
    latencies: list[float] = []
    replies: list = []
    try:
        for channel in channels:  # connect before the clock starts
            await asyncio.wait_for(channel.channel_ready(), 20)
            await channel.unary_unary(METHOD_HEALTH)(b"", timeout=20)
        deadline = [0.0]

        async def unary_lane(call, pending):
            for index in pending:
                if clock() > deadline[0]:
                    return
                request = job.requests[index]
                before = clock()
                try:
                    replies.append(await call(request, metadata=metadata,
                                              timeout=call_timeout_seconds))
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                latencies.append(clock() - before)

        async def orders_lane(create, confirm, pending):
            for index in pending:
                if clock() > deadline[0]:
                    return
                create_request, confirm_request = job.requests[index]
                before = clock()
                try:
                    created = await create(create_request, metadata=metadata,
                                           timeout=call_timeout_seconds)
                    confirmed = await confirm(confirm_request, metadata=metadata,
                                              timeout=call_timeout_seconds)
                    replies.append((created, confirmed))
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] += 1
                latencies.append(clock() - before)

        async def stream_lane(channel, items):
            call = channel.stream_stream(METHOD_STREAM)(metadata=metadata,
                                                        timeout=call_timeout_seconds * 4)
            window = asyncio.Semaphore(STREAM_WINDOW)
            sent_at: collections.deque = collections.deque()

            async def writer():
                for request in items:
                    await window.acquire()
                    if clock() > deadline[0]:
                        break
                    sent_at.append(clock())
                    await call.write(request)
                await call.done_writing()

            writing = asyncio.ensure_future(writer())
            try:
                while True:
                    reply = await call.read()
                    if reply is grpc.aio.EOF:
                        break
                    latencies.append(clock() - sent_at.popleft())
                    replies.append(reply)
                    window.release()
                await writing
            except grpc.aio.AioRpcError as error:
                errors[error.code().name] += 1
                writing.cancel()

        pending = iter(range(len(job.requests)))  # shared by the lanes of this process
        if job.kind in ("unary", "batch"):
            method = METHOD_REDEEM if job.kind == "unary" else METHOD_BATCH
            calls = [channel.unary_unary(method) for channel in channels]
            lanes = [unary_lane(calls[lane % len(calls)], pending)
                     for lane in range(IN_FLIGHT[job.kind])]
        elif job.kind == "orders":
            pairs = [(channel.unary_unary(METHOD_CREATE), channel.unary_unary(METHOD_CONFIRM))
                     for channel in channels]
            lanes = [orders_lane(*pairs[lane % len(pairs)], pending)
                     for lane in range(IN_FLIGHT["orders"])]
        elif job.kind == "stream":
            share = [job.requests[lane::STREAMS_PER_PROCESS]
                     for lane in range(STREAMS_PER_PROCESS)]
            lanes = [stream_lane(channels[lane % len(channels)], share[lane])
                     for lane in range(STREAMS_PER_PROCESS)]
        else:
            raise ValueError(job.kind)
        barrier.wait(60)  # every process starts together
        started = clock()
        deadline[0] = started + job.deadline_seconds
        await asyncio.gather(*lanes)
        finished = clock()
    finally:
        for channel in channels:
            await channel.close()
    return {"started": started, "finished": finished, "calls": len(latencies),
            "latencies": array.array("d", latencies).tobytes(), "errors": dict(errors),
            "succeeded": count_succeeded(job.kind, replies) if job.decode else 0,
            "capped": finished >= deadline[0]}


def count_succeeded(kind: str, replies: list) -> int:
    """Items whose reply says they were done: REDEEMED codes, or orders CREATED and PAID."""
    from kamicore.v1 import orders_pb2, redemption_pb2
    redeemed = redemption_pb2.REDEEM_STATUS_REDEEMED
    if kind in ("unary", "stream"):
        parse = redemption_pb2.RedeemResponse.FromString
        return sum(parse(reply).status == redeemed for reply in replies)
    if kind == "batch":
        parse = redemption_pb2.RedeemBatchResponse.FromString
        return sum(result.status == redeemed for reply in replies
                   for result in parse(reply).results)
    created, paid = orders_pb2.CREATE_ORDER_STATUS_CREATED, orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
    return sum(orders_pb2.CreateOrderResponse.FromString(create).status == created
               and orders_pb2.ConfirmPaymentResponse.FromString(confirm).status == paid
               for create, confirm in replies)


class DriverPool:
    """P spawned driver processes, reused for every job of the run."""

    def __init__(self, processes: int):
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(processes)
        self.workers = []
        for _ in range(processes):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=driver_main, args=(child_end, self.barrier),
                                      name="server-bench-driver", daemon=True)
            process.start()
            child_end.close()
            self.workers.append((process, parent_end))

    def run(self, jobs: list[Job]) -> list[dict]:
        expect(len(jobs) == len(self.workers), "one job per driver process")
        self.barrier.reset()
        for (_, connection), job in zip(self.workers, jobs):
            connection.send(job)
        results = []
        deadline = time.monotonic() + jobs[0].deadline_seconds + call_timeout_seconds + 90
        for process, connection in self.workers:
            while not connection.poll(1.0):
                expect(process.is_alive(), f"driver process {process.pid} died")
                expect(time.monotonic() < deadline, "a driver job did not finish in time")
            results.append(connection.recv())
        failures = [result["error"] for result in results if "error" in result]
        expect(not failures, f"driver: {failures}")
        return results

    def close(self) -> None:
        for process, connection in self.workers:
            with contextlib.suppress(OSError, ValueError):
                connection.send(None)
        for process, connection in self.workers:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join(5)
            connection.close()
        self.workers.clear()


# -- measurement ---------------------------------------------------------------------------------

@dataclass
class Figure:
    """One line of the table: per-round throughputs and every call's latency."""

    key: str
    label: str
    server: str  # kamicore or do-nothing
    tool: str  # h2load or driver
    items_per_call: int = 1
    unit: str = "calls/s"
    rates: list = field(default_factory=list)  # items/s, one per measured round
    latencies: list = field(default_factory=list)  # seconds (h2load: one mean per round)
    calls: int = 0  # measured calls, all rounds
    succeeded: int = 0  # measured items that succeeded (kamicore only)
    items: int = 0  # measured items
    errors: collections.Counter = field(default_factory=collections.Counter)
    capped: int = 0  # rounds that hit the job deadline
    server_cpu_seconds: float = 0.0  # CPU the server's processes used while measured
    server_seconds: float = 0.0  # kamicore: sum of its own RPC latency histogram
    server_calls: float = 0.0
    wall_seconds: float = 0.0  # measured time, all rounds
    commits: float = 0.0  # kamicore: group commits, both workers
    commit_operations: float = 0.0
    commit_seconds: float = 0.0  # begin (waiting for the LMDB write lock included) to fsync

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0

    def p(self, fraction: float) -> float:
        return percentile_ms(sorted(self.latencies), fraction)


def parse_metrics(text: str) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text exposition."""
    samples = {}
    pattern = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = pattern.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def metric_sum(samples: dict, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and wanted <= sample_labels)


class Kamicore:
    """The kamicore server under test: start, seed, scrape."""

    def __init__(self, children: Children, data_dir: Path):
        self.children = children
        self.data_dir = data_dir
        self.port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port == self.port:
            self.metrics_port = free_port()
        self.process: subprocess.Popen | None = None
        self.keys: dict[str, str] = {}
        self.sold: list[str] = []  # plaintexts of SOLD codes, in sale order

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir",
                                 str(self.data_dir), *args], capture_output=True, text=True,
                                env=clean_environment(), timeout=120)
        expect(result.returncode == 0,
               f"kamicore {' '.join(args[:3])} exited {result.returncode}: {result.stderr}")
        return result

    def prepare(self) -> None:
        """The catalog and the keys, with the CLI, before the server opens the data dir."""
        self.cli("sku", "create", SKU, "--name", "Bench gift card 50", "--currency", CURRENCY,
                 "--face-value", f"{FACE_VALUE_MICROS / 1e6:.2f}",
                 *[f"--price={channel}={micros / 1e6:.2f}" for channel, micros in PRICES.items()])
        self.keys["pos"] = self.cli("keys", "create", "--role", "pos", "--terminal", TERMINAL,
                                    "--name", "server bench").stdout.strip()
        self.keys["storefront"] = self.cli("keys", "create", "--role", "storefront",
                                           "--channel", CHANNEL,
                                           "--name", "server bench").stdout.strip()
        expect(all(key.startswith("kc_") for key in self.keys.values()), "keys create")

    def start(self) -> None:
        self.process = self.children.start("kamicore", [
            sys.executable, "-m", "kamicore.cli", "--data-dir", str(self.data_dir), "serve",
            "--workers", str(WORKERS), "--listen", self.target,
            "--metrics-listen", f"{HOST}:{self.metrics_port}"])
        wait_serving(self.process, self.target, "kamicore", self.children, health=True)
        self.keys["admin"] = (self.data_dir / "admin.key").read_text().strip()

    def worker_pids(self) -> list[int]:
        """For profiling (py-spy, perf): the supervisor's children."""
        return descendants([self.process.pid])[1:] if self.process else []

    def metrics(self) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics",
                                    timeout=10) as reply:
            return parse_metrics(reply.read().decode())

    def seed(self, sold: int, available: int) -> None:
        """Import sold + available codes over ImportCodes, then sell `sold` of them with
        CreateOrder + ConfirmPayment; the replies' plaintexts become self.sold."""
        import grpc
        from kamicore.v1 import common_pb2, inventory_pb2, orders_pb2
        total = sold + available
        channels = [grpc.insecure_channel(self.target,
                                          options=[("grpc.use_local_subchannel_pool", 1),
                                                   ("grpc.max_receive_message_length", 2**26)])
                    for _ in range(seed_parallel)]
        try:
            def import_range(lane: int) -> int:
                def requests():
                    yield inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(
                        sku_id=SKU, batch_id="bench-batch", supplier_id="bench-supplier",
                        unit_cost_micros=900_000))
                    for start in range(lane * import_chunk_codes, total,
                                       seed_parallel * import_chunk_codes):
                        codes = [code_of("BNCH", number) for number in
                                 range(start, min(total, start + import_chunk_codes))]
                        yield inventory_pb2.ImportCodesRequest(
                            chunk=inventory_pb2.CodeChunk(codes=codes))
                call = channels[lane].stream_unary(
                    METHOD_IMPORT,
                    request_serializer=inventory_pb2.ImportCodesRequest.SerializeToString,
                    response_deserializer=inventory_pb2.ImportCodesResponse.FromString)
                reply = call(requests(), metadata=bearer(self.keys["admin"]),
                             timeout=call_timeout_seconds * 4)
                expect(reply.status == inventory_pb2.IMPORT_STATUS_OK and not reply.rejected,
                       f"import: {reply.status} {reply.rejected} rejected")
                return reply.imported

            def sell(number: int, quantity: int) -> list[str]:
                channel = channels[number % seed_parallel]
                metadata = bearer(self.keys["storefront"])
                create = channel.unary_unary(
                    METHOD_CREATE,
                    request_serializer=orders_pb2.CreateOrderRequest.SerializeToString,
                    response_deserializer=orders_pb2.CreateOrderResponse.FromString)
                confirm = channel.unary_unary(
                    METHOD_CONFIRM,
                    request_serializer=orders_pb2.ConfirmPaymentRequest.SerializeToString,
                    response_deserializer=orders_pb2.ConfirmPaymentResponse.FromString)
                lines = [orders_pb2.OrderLine(sku_id=SKU, quantity=min(1000, quantity - start))
                         for start in range(0, quantity, 1000)]
                created = create(orders_pb2.CreateOrderRequest(
                    idempotency_key=f"seed-{number}", buyer=orders_pb2.Buyer(account_id="seed"),
                    lines=lines, hold_seconds=3600), metadata=metadata,
                    timeout=call_timeout_seconds)
                expect(created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED,
                       f"seed order: {created.status}")
                confirmed = confirm(orders_pb2.ConfirmPaymentRequest(
                    order_id=created.order.order_id, payment_reference=f"seed-pay-{number}",
                    amount=common_pb2.Money(currency=CURRENCY,
                                            amount_micros=quantity * PRICES[CHANNEL])),
                    metadata=metadata, timeout=call_timeout_seconds)
                expect(confirmed.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
                       and len(confirmed.order.codes) == quantity,
                       f"seed payment: {confirmed.status}")
                return [code.code for code in confirmed.order.codes]

            with concurrent.futures.ThreadPoolExecutor(seed_parallel) as pool:
                started = time.perf_counter()
                imported = sum(pool.map(import_range, range(seed_parallel)))
                expect(imported == total, f"seed: imported {imported} of {total}")
                imported_at = time.perf_counter()
                sizes = [min(seed_order_codes, sold - start)
                         for start in range(0, sold, seed_order_codes)]
                for codes in pool.map(sell, range(len(sizes)), sizes):
                    self.sold.extend(codes)
                log(f"setup: imported {total:,} codes in {imported_at - started:.1f} s, sold "
                    f"{sold:,} in {time.perf_counter() - imported_at:.1f} s")
        finally:
            for channel in channels:
                channel.close()
        expect(len(set(self.sold)) == sold, "seed: distinct SOLD codes")


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def wait_serving(process: subprocess.Popen, target: str, name: str, children: Children,
                 health: bool) -> None:
    """Until 8 fresh connections in a row answer (health SERVING for kamicore; any answer for
    do-nothing): each lands on one of the workers."""
    import grpc
    from grpc_health.v1 import health_pb2
    deadline = time.monotonic() + server_start_timeout_seconds
    in_a_row = 0
    while in_a_row < 8:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} while starting:\n"
                               f"{children.log_tail(name)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not serving after {server_start_timeout_seconds:.0f} s:"
                               f"\n{children.log_tail(name)}")
        serving = False
        with grpc.insecure_channel(target,
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            with contextlib.suppress(grpc.RpcError):
                reply = channel.unary_unary(METHOD_HEALTH)(
                    health_pb2.HealthCheckRequest().SerializeToString(), timeout=2)
                serving = not health or health_pb2.HealthCheckResponse.FromString(
                    reply).status == health_pb2.HealthCheckResponse.SERVING
        if serving:
            in_a_row += 1
        else:
            in_a_row = 0
            time.sleep(0.2)


# -- h2load ---------------------------------------------------------------------------------------

def ensure_h2load() -> str:
    found = shutil.which("h2load")
    if found:
        return found
    log("h2load is missing: installing Debian's nghttp2-client ...")
    install = ["apt-get", "install", "-y", "-q", "nghttp2-client"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        result = subprocess.run(install, capture_output=True, text=True)
        expect(result.returncode == 0, f"apt-get install nghttp2-client: {result.stderr[-2000:]}")
    found = shutil.which("h2load")
    expect(found is not None, "h2load not found after installing nghttp2-client")
    return found


def grpc_frame(message: bytes) -> bytes:
    """A gRPC message on the wire: not compressed, big-endian length, the message."""
    return b"\0" + len(message).to_bytes(4, "big") + message


@dataclass
class H2loadRun:
    seconds: float
    requests_per_second: float
    done: int
    succeeded: int  # HTTP 2xx
    failed: int
    mean_latency_seconds: float


def h2load(binary: str, url: str, body_file: Path, key: str, requests: int) -> H2loadRun:
    argv = [binary, "-n", str(requests), *H2LOAD_OPTIONS,
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            "-H", f"authorization: Bearer {key}", "-d", str(body_file), url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    text = result.stdout
    expect(result.returncode == 0, f"h2load exited {result.returncode}: {result.stderr[-1000:]}")
    finished = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed", text)
    latency = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", text)
    expect(finished and counts and latency, f"unexpected h2load output:\n{text[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    return H2loadRun(seconds, float(finished.group(3)), int(counts.group(3)),
                     int(counts.group(4)), int(counts.group(5)),
                     duration_seconds(latency.group(3)))


def duration_seconds(text: str) -> float:
    """h2load's durations: 850us, 12.34ms, 1.02s."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    expect(match is not None, f"h2load duration {text!r}")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


# -- the benchmark ---------------------------------------------------------------------------------

class Bench:
    def __init__(self, plan: Plan, root: Path, clients: int):
        self.plan = plan
        self.root = root
        self.clients = clients
        self.children = Children(root)
        self.kamicore = Kamicore(self.children, root / "data")
        self.nothing_port = free_port()
        while self.nothing_port in (self.kamicore.port, self.kamicore.metrics_port):
            self.nothing_port = free_port()
        self.pool: DriverPool | None = None
        self.figures: dict[str, Figure] = {}
        self.sold_next = 0
        self.order_number = 0
        self.request_number = 0
        self.setup_seconds = 0.0
        self.h2load_binary = ""
        self.replay_code = ""
        self.seeded = 0
        self.nothing_pids: list[int] = []

    @property
    def nothing_target(self) -> str:
        return f"{HOST}:{self.nothing_port}"

    def targets(self) -> dict:
        return {"kamicore": self.kamicore.target, "do-nothing": self.nothing_target}

    def server_cpu_seconds(self, server: str) -> float:
        roots = [self.kamicore.process.pid] if server == "kamicore" else self.nothing_pids
        return cpu_seconds(roots)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        self.children.stop_all()

    # -- setup -------------------------------------------------------------------------------

    def setup(self) -> None:
        started = time.perf_counter()
        self.h2load_binary = ensure_h2load()
        self.pool = DriverPool(self.clients)  # spawning takes a while: start it first
        log("setup: catalog and keys (CLI) ...")
        self.kamicore.prepare()
        log(f"setup: starting kamicore ({WORKERS} workers) and do-nothing ({WORKERS} "
            "processes) ...")
        self.kamicore.start()
        for number in range(WORKERS):
            name = f"do-nothing-{number}"
            process = self.children.start(name, [sys.executable, str(Path(__file__).resolve()),
                                                 "--serve-nothing", self.nothing_target])
            wait_serving(process, self.nothing_target, name, self.children, health=False)
            self.nothing_pids.append(process.pid)
        sold = self.plan.sold_codes(self.clients)
        available = self.plan.available_codes(self.clients)
        log(f"setup: importing {sold + available:,} codes over ImportCodes and selling "
            f"{sold:,} with CreateOrder + ConfirmPayment ...")
        self.kamicore.seed(sold, available)
        self.seeded = sold + available
        self.setup_seconds = time.perf_counter() - started

    # -- inputs --------------------------------------------------------------------------------

    def next_sold(self, count: int) -> list[str]:
        codes = self.kamicore.sold[self.sold_next:self.sold_next + count]
        expect(len(codes) == count, "out of SOLD codes: the plan's counts are off")
        self.sold_next += count
        return codes

    def request_ids(self, count: int) -> list[str]:
        """The terminal's sequence numbers: fixed width, so each new key sorts last."""
        first = self.request_number
        self.request_number += count
        return [f"r{number:011d}" for number in range(first, first + count)]

    def redeem_requests(self, count: int) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        return [redemption_pb2.RedeemRequest(code=code, request_id=request_id).SerializeToString()
                for code, request_id in zip(self.next_sold(count), self.request_ids(count))]

    def batch_requests(self, calls: int) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        requests = []
        for _ in range(calls):
            items = [redemption_pb2.RedeemRequest(code=code, request_id=request_id)
                     for code, request_id in zip(self.next_sold(batch_codes),
                                                 self.request_ids(batch_codes))]
            requests.append(redemption_pb2.RedeemBatchRequest(items=items).SerializeToString())
        return requests

    def order_requests(self, count: int) -> list[tuple[bytes, bytes]]:
        from kamicore.v1 import common_pb2, orders_pb2
        pairs = []
        for _ in range(count):
            self.order_number += 1
            key = f"bench-{self.order_number}"
            create = orders_pb2.CreateOrderRequest(
                idempotency_key=key,
                buyer=orders_pb2.Buyer(account_id=f"buyer-{self.order_number % 1000}",
                                       ip="192.0.2.1", device_id="bench"),
                lines=[orders_pb2.OrderLine(sku_id=SKU, quantity=1)], hold_seconds=900)
            confirm = orders_pb2.ConfirmPaymentRequest(
                order_id=f"storefront:{CHANNEL}/{key}", payment_reference=f"pay-{key}",
                amount=common_pb2.Money(currency=CURRENCY, amount_micros=PRICES[CHANNEL]))
            pairs.append((create.SerializeToString(), confirm.SerializeToString()))
        return pairs

    # -- figures -----------------------------------------------------------------------------------

    def figure(self, key: str, label: str, server: str, tool: str, **options) -> Figure:
        if key not in self.figures:
            self.figures[key] = Figure(key, label, server, tool, **options)
        return self.figures[key]

    def prepare_h2load(self) -> dict:
        """The two bodies h2load repeats. The Redeem's first call is made here, so every h2load
        call is a replay of it."""
        import grpc
        from kamicore.v1 import redemption_pb2
        [self.replay_code] = self.next_sold(1)
        redeem = redemption_pb2.RedeemRequest(code=self.replay_code,
                                              request_id="h2load-replay").SerializeToString()
        verify = redemption_pb2.VerifyCodeRequest(code=self.replay_code).SerializeToString()
        with grpc.insecure_channel(self.kamicore.target) as channel:
            first = redemption_pb2.RedeemResponse.FromString(channel.unary_unary(METHOD_REDEEM)(
                redeem, metadata=bearer(self.kamicore.keys["pos"]), timeout=30))
        expect(first.status == redemption_pb2.REDEEM_STATUS_REDEEMED, f"first redeem: {first}")
        bodies = {}
        for name, message in (("redeem", redeem), ("verify", verify)):
            path = self.root / f"{name}.bin"
            path.write_bytes(grpc_frame(message))
            bodies[name] = path
        return bodies

    def round_h2load(self, bodies: dict, measured: bool) -> None:
        requests = self.plan.h2load_requests if measured else max(
            500, int(self.plan.h2load_requests * warmup_fraction))
        for name, method, label in (("redeem", METHOD_REDEEM, "Redeem, one request id replayed"),
                                    ("verify", METHOD_VERIFY, "VerifyCode, one code")):
            for server, target in self.targets().items():
                figure = self.figure(f"h2load-{name}-{server}", label, server, "h2load")
                before = self.kamicore.metrics() if server == "kamicore" else None
                cpu_before = self.server_cpu_seconds(server)
                run = h2load(self.h2load_binary, f"http://{target}{method}", bodies[name],
                             self.kamicore.keys["pos"], requests)
                if not measured:
                    continue
                figure.server_cpu_seconds += self.server_cpu_seconds(server) - cpu_before
                figure.rates.append(run.requests_per_second)
                figure.latencies.append(run.mean_latency_seconds)
                figure.calls += run.done
                figure.wall_seconds += run.seconds
                if run.failed:
                    figure.errors["HTTP failed"] += run.failed
                if before is not None:
                    after = self.kamicore.metrics()
                    self.add_server_metrics(figure, before, after, (method,))
                    answered = round(metric_sum(after, "kamicore_rpcs_total", method=method)
                                     - metric_sum(before, "kamicore_rpcs_total", method=method))
                    ok = round(
                        metric_sum(after, "kamicore_rpcs_total", method=method, code="OK")
                        - metric_sum(before, "kamicore_rpcs_total", method=method, code="OK"))
                    figure.items += answered
                    figure.succeeded += ok
                    if answered != ok:
                        figure.errors["not OK"] += answered - ok

    @staticmethod
    def add_server_metrics(figure: Figure, before: dict, after: dict, methods: tuple) -> None:
        """kamicore's own view of a figure: its RPC latency histogram for `methods` (none for a
        stream: it is timed once, as a whole) and its group commits."""
        def delta(name: str, **labels) -> float:
            return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)
        for method in methods:
            figure.server_seconds += delta("kamicore_rpc_latency_seconds_sum", method=method)
            figure.server_calls += delta("kamicore_rpc_latency_seconds_count", method=method)
        figure.commits += delta("kamicore_engine_commit_operations_count")
        figure.commit_operations += delta("kamicore_engine_commit_operations_sum")
        figure.commit_seconds += delta("kamicore_engine_commit_seconds_sum")

    def round_driver(self, key: str, kind: str, label: str, requests: list, items_per_call: int,
                     unit: str, method: str, measured: bool) -> None:
        """The same requests against kamicore, then do-nothing (its replies are empty)."""
        share = [requests[index::self.clients] for index in range(self.clients)]
        for server, target in self.targets().items():
            figure = self.figure(f"{key}-{server}", label, server, "driver",
                                 items_per_call=items_per_call, unit=unit)
            kamicore = server == "kamicore"
            before = self.kamicore.metrics() if kamicore and measured else None
            key_name = "storefront" if kind == "orders" else "pos"
            cpu_before = self.server_cpu_seconds(server)
            results = self.pool.run([
                Job(target, kind, part, self.kamicore.keys[key_name],
                    self.plan.job_deadline_seconds, decode=kamicore) for part in share])
            server_cpu = self.server_cpu_seconds(server) - cpu_before
            errors = collections.Counter()
            for result in results:
                errors.update(result["errors"])
            calls = sum(result["calls"] for result in results)
            succeeded = sum(result["succeeded"] for result in results)
            if kamicore:
                expect(succeeded == calls * items_per_call and not errors,
                       f"{key}: {succeeded:,} of {calls * items_per_call:,} succeeded; "
                       f"errors {dict(errors)}")
            if not measured:
                continue
            seconds = (max(result["finished"] for result in results)
                       - min(result["started"] for result in results))
            figure.rates.append(calls * items_per_call / seconds)
            figure.wall_seconds += seconds
            for result in results:
                figure.latencies.extend(array.array("d", result["latencies"]))
            figure.calls += calls
            figure.items += calls * items_per_call
            figure.succeeded += succeeded
            figure.errors.update(errors)
            figure.capped += any(result["capped"] for result in results)
            figure.server_cpu_seconds += server_cpu
            if before is not None:
                methods = {"orders": (METHOD_CREATE, METHOD_CONFIRM), "stream": ()}.get(
                    kind, (method,))
                self.add_server_metrics(figure, before, self.kamicore.metrics(), methods)

    def run(self) -> None:
        plan = self.plan
        bodies = self.prepare_h2load()
        for round_number in range(plan.rounds + 1):
            measured = round_number > 0  # round 0 warms up every path of both servers
            log(f"round {round_number}/{plan.rounds}" + ("" if measured else " (warm-up)"))

            def scale(count: int) -> int:
                return count if measured else plan.warmup(count, self.clients)

            self.round_h2load(bodies, measured)
            self.round_driver("unary", "unary", "Redeem, distinct codes", self.redeem_requests(
                scale(plan.unary)), 1, "calls/s", METHOD_REDEEM, measured)
            self.round_driver("batch", "batch", "RedeemBatch, distinct codes",
                              self.batch_requests(scale(plan.batch_calls)), batch_codes,
                              "codes/s", METHOD_BATCH, measured)
            self.round_driver("stream", "stream", "RedeemStream, distinct codes",
                              self.redeem_requests(scale(plan.stream)), 1, "codes/s",
                              METHOD_STREAM, measured)
            self.round_driver("orders", "orders", "CreateOrder + ConfirmPayment, 1 code",
                              self.order_requests(scale(plan.orders)), 1, "orders/s", "",
                              measured)


# -- report -----------------------------------------------------------------------------------

ROWS = [  # (key, kind of throughput) in table order
    "h2load-redeem", "h2load-verify", "unary", "batch", "stream", "orders"]


git_commit = common.git_commit

def machine() -> str:
    import grpc
    return common.machine(f"grpcio {grpc.__version__}")


def number(value: float) -> str:
    return f"{value:,.0f}"


def round_ratios(figures: dict, key: str) -> list[float]:
    """kamicore / do-nothing round by round: both ran back to back, so each pair saw the same
    machine."""
    return [top / bottom if bottom else 0.0 for top, bottom in
            zip(figures[f"{key}-kamicore"].rates, figures[f"{key}-do-nothing"].rates)]


def ratio(figures: dict, key: str) -> float:
    """The median of the per-round ratios."""
    ratios = round_ratios(figures, key)
    return statistics.median(ratios) if ratios else 0.0


def paired_ratios(figures: dict, key: str) -> str:
    return ", ".join(f"{value:.2f}" for value in round_ratios(figures, key))


def target_text(figures: dict, key: str) -> str:
    if key == "h2load-redeem":
        met = ratio(figures, key) >= redeem_unary_ratio_target
        return f"≥ {redeem_unary_ratio_target:.1f}× do-nothing: {'met' if met else 'MISSED'}"
    if key == "batch":
        met = figures["batch-kamicore"].rate >= redeem_batch_target_codes_per_second
        return (f"≥ {number(redeem_batch_target_codes_per_second)} codes/s: "
                f"{'met' if met else 'MISSED'}")
    if key == "orders":
        met = figures["orders-kamicore"].rate >= orders_target_per_second
        return f"≥ {number(orders_target_per_second)} orders/s: {'met' if met else 'MISSED'}"
    return ""


def succeeded_text(figure: Figure) -> str:
    if figure.server != "kamicore":
        return "(empty replies)"
    what = {"h2load": "OK of answered", "driver": "done"}[figure.tool]
    text = f"{number(figure.succeeded)}/{number(figure.items)} {what}"
    if figure.errors:
        text += " · " + ", ".join(f"{name} {count}" for name, count in figure.errors.items())
    return text


def cpu_per_call_ms(figure: Figure) -> float:
    return figure.server_cpu_seconds / figure.calls * 1000 if figure.calls else 0.0


def table(figures: dict) -> list[str]:
    lines = ["| figure | tool | server | items/call | throughput (median) | min–max over rounds "
             "| p50 ms | p99 ms | server CPU ms/call | succeeded | kamicore / do-nothing "
             "| target |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for key in ROWS:
        for server in ("kamicore", "do-nothing"):
            figure = figures[f"{key}-{server}"]
            if figure.tool == "h2load":  # h2load gives a mean per run, no percentiles
                p50 = f"mean {statistics.median(figure.latencies) * 1000:.2f}"
                p99 = "–"
            else:
                p50, p99 = f"{figure.p(0.50):.2f}", f"{figure.p(0.99):.2f}"
            kamicore = server == "kamicore"
            lines.append(
                f"| {figure.label} | {figure.tool} | {server} | {figure.items_per_call} | "
                f"{number(figure.rate)} {figure.unit} | "
                f"{number(min(figure.rates))}–{number(max(figure.rates))} | {p50} | {p99} | "
                f"{cpu_per_call_ms(figure):.2f} | {succeeded_text(figure)} | "
                f"{f'{ratio(figures, key):.2f}' if kamicore else ''} | "
                f"{target_text(figures, key) if kamicore else ''} |")
    return lines


def server_table(figures: dict) -> list[str]:
    """kamicore's own view of each figure, from its /metrics (deltas over each measured job)."""
    lines = ["| kamicore figure | RPC ms (server's mean) | group commits/s | operations/commit "
             "| ms/commit (mean) | writer time / wall time |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key in ROWS:
        figure = figures[f"{key}-kamicore"]
        served = (f"{figure.server_seconds / figure.server_calls * 1000:.2f}"
                  if figure.server_calls else "–")
        if not figure.commits or not figure.wall_seconds:
            lines.append(f"| {figure.label} | {served} | 0 | – | – | – |")
            continue
        lines.append(
            f"| {figure.label} | {served} | {number(figure.commits / figure.wall_seconds)} | "
            f"{figure.commit_operations / figure.commits:,.1f} | "
            f"{figure.commit_seconds / figure.commits * 1000:.2f} | "
            f"{figure.commit_seconds / figure.wall_seconds:.0%} |")
    return lines


def headline(figures: dict) -> str:
    return (f"redeem_unary_ratio={ratio(figures, 'h2load-redeem'):.2f} "
            f"redeem_batch_codes_per_second={figures['batch-kamicore'].rate:.0f} "
            f"orders_per_second={figures['orders-kamicore'].rate:.0f}")


def write_results(report: list[str], history_line: str) -> None:
    """RESULTS.md keeps everything before SECTION_HEADING (the engine's part) as it is; this
    script's section (Latest, replaced, then History, one line per run) goes after it."""
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    if SECTION_HEADING in lines:
        start = lines.index(SECTION_HEADING)
        kept, ours = lines[:start], lines[start:]
    else:
        kept, ours = lines, []
    history, in_history = [], False
    for line in ours:
        if line.startswith("### "):
            in_history = line.strip() == "### History"
        elif in_history and line.startswith("- "):
            history.append(line)
    history.append(history_line)
    while kept and not kept[-1].strip():
        kept.pop()
    section = [
        SECTION_HEADING,
        "",
        "Written by `make bench-server` (bench/server_bench.py; its docstring says what is "
        "measured and how). kamicore (2 workers) and a do-nothing grpc.aio server (2 processes, "
        "empty replies) are measured back to back in one run; compare the kamicore / do-nothing "
        "ratios rather than absolutes across runs (the 2-core machine is shared with the client "
        "and h2load).",
        "",
        "### Latest",
        "",
        *report,
        "",
        "### History",
        "",
        *history,
        "",
    ]
    RESULTS_FILE.write_text("\n".join(kept + [""] + section))


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-nothing":
        serve_nothing(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~60 s smoke run")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"measured rounds (default {PLAN_FULL.rounds})")
    parser.add_argument("--clients", type=int, default=DRIVER_PROCESSES, choices=(2, 3, 4),
                        help=f"driver processes (default {DRIVER_PROCESSES})")
    options = parser.parse_args()
    plan = PLAN_QUICK if options.quick else PLAN_FULL
    if options.rounds:
        plan = Plan(**{**plan.__dict__, "rounds": options.rounds})
    commit = git_commit()  # now: the tree may change while the run goes on

    def stop(signal_number, frame):
        raise SystemExit(143 if signal_number == signal.SIGTERM else 124)

    # SIGTERM (make interrupted, CI timeout) and the run limit must still stop every process
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(plan.run_limit_seconds)
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    TEMP_PARENT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="server-bench-", dir=TEMP_PARENT))
    bench = Bench(plan, root, options.clients)
    try:
        bench.setup()
        bench.run()
    except BaseException:
        if bench.children.processes:
            log("kamicore log (tail):\n" + bench.children.log_tail("kamicore"))
        raise
    finally:
        signal.alarm(0)
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    figures = bench.figures
    date = started_at.strftime("%Y-%m-%d %H:%M UTC")
    capped = [key for key, figure in figures.items() if figure.capped]
    report = [
        f"- date: {date}" + (" (quick run)" if options.quick else ""),
        f"- commit: {commit}",
        f"- machine: {machine()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after",
        f"- {plan.rounds} measured rounds after a warm-up round; setup {bench.setup_seconds:.0f} s"
        f" (seeding {bench.seeded:,} codes over ImportCodes, {len(bench.kamicore.sold):,} of them "
        f"sold with CreateOrder + ConfirmPayment), whole run {elapsed:.0f} s",
        f"- h2load -n {plan.h2load_requests:,} {' '.join(H2LOAD_OPTIONS)} per run: the Redeem body "
        "repeats one request id on one code, so every h2load Redeem is an idempotent replay of a "
        "call made before; succeeded = kamicore_rpcs_total{code=\"OK\"} delta of all answered",
        f"- driver: {options.clients} processes × {CHANNELS_PER_PROCESS} connections; in flight "
        f"per process: unary {IN_FLIGHT['unary']}, RedeemBatch {IN_FLIGHT['batch']} calls of "
        f"{batch_codes:,} codes, RedeemStream {STREAMS_PER_PROCESS} streams × {STREAM_WINDOW}, "
        f"orders {IN_FLIGHT['orders']}; per round {plan.unary:,} Redeem, {plan.batch_calls} "
        f"RedeemBatch, {plan.stream:,} RedeemStream items, {plan.orders:,} orders; every write "
        "durable (fsync per group commit)",
        "- latencies are under saturation (≈ calls in flight / throughput); server CPU ms/call: "
        "user + system time of the server's processes (kamicore: supervisor and workers) during "
        "the figure, per call (per 1,000-code call for RedeemBatch, per order for orders); "
        "kamicore / do-nothing: median of the per-round ratios",
    ]
    if capped:
        report.append(f"- capped at the job deadline ({plan.job_deadline_seconds:.0f} s): "
                      f"{', '.join(capped)}")
    report += [
        "",
        *table(figures),
        "",
        "- kamicore / do-nothing per round: " + "; ".join(
            f"{key} {paired_ratios(figures, key)}" for key in ROWS),
        "",
        "kamicore's own view (its /metrics): RPC ms is kamicore_rpc_latency_seconds, interceptor "
        "to reply (orders: both calls averaged; a stream is timed once, as a whole, so not shown); "
        "an operation is one RPC's engine call (a RedeemBatch of 1,000 codes is one); ms/commit "
        "runs from opening the write transaction, waiting for the other worker's LMDB write lock "
        "included, to fsync; writer time adds both workers' writers:",
        "",
        *server_table(figures),
    ]
    if not options.no_write:
        history_line = (
            f"- {date} · {commit}{' · quick' if options.quick else ''} · unary Redeem (h2load "
            f"replay) {number(figures['h2load-redeem-kamicore'].rate)}/s = "
            f"{ratio(figures, 'h2load-redeem'):.2f}× do-nothing · distinct Redeem "
            f"{number(figures['unary-kamicore'].rate)}/s · RedeemBatch "
            f"{number(figures['batch-kamicore'].rate)} codes/s · RedeemStream "
            f"{number(figures['stream-kamicore'].rate)}/s · orders "
            f"{number(figures['orders-kamicore'].rate)}/s")
        write_results(report + ["", "`" + headline(figures) + "`"], history_line)
        log(f"wrote {RESULTS_FILE.relative_to(REPO)}")
    print("\n".join(report))
    print(headline(figures))  # the last line: what scripts parse
    return 0


if __name__ == "__main__":
    sys.exit(main())
