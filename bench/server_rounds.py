"""The server benchmark's run: setup (kamicore seeded, the do-nothing server, the driver), the
inputs, and the closed-loop rounds, each figure against kamicore and then do-nothing, back to
back; then the open-loop runs (server_open_loop.py) and the worker scaling (server_scaling.py)."""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path

import server_open_loop
import server_scaling
import server_seed
from common import Rounds, expect, log, measured_rounds
from driver import DriverPool
from h2load_runs import ensure_h2load, grpc_frame, h2load
from processes import Children, cpu_seconds
from rpcs import (
    BATCH_CODES,
    METHOD_BATCH,
    METHOD_CONFIRM,
    METHOD_CREATE,
    METHOD_REDEEM,
    METHOD_VERIFY,
    Requests,
    bearer,
)
from server_plan import IN_FLIGHT, SKU, STREAMS_PER_PROCESS, Plan, warmup_fraction
from servers import KamicoreServer, metric_sum, start_nothing


@dataclass
class Figure(Rounds):
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


class Bench:
    def __init__(self, plan: Plan, root: Path, clients: int, workers: int):
        self.plan = plan
        self.root = root
        self.clients = clients
        self.workers = workers
        self.children = Children(root)
        self.kamicore = KamicoreServer(self.children, root / "data", workers)
        self.keys: dict[str, str] = {}
        self.sold: list[str] = []  # plaintexts of SOLD codes, in sale order
        self.sold_next = 0
        self.requests = Requests("r", SKU)
        self.nothing_target = ""
        self.nothing_pids: list[int] = []
        self.pool: DriverPool | None = None
        self.figures: dict[str, Figure] = {}
        self.open_loop: dict = {}  # key -> server_open_loop.OpenFigure
        self.scaling: dict[int, dict[str, Figure]] = {}  # workers -> figures
        self.messages: dict[str, bytes] = {}  # the replayed Redeem and VerifyCode requests
        self.setup_seconds = 0.0
        self.seeded = 0
        self.h2load_binary = ""

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

    def setup(self) -> None:
        started = time.perf_counter()
        self.h2load_binary = ensure_h2load()
        self.pool = DriverPool(self.clients)  # spawning takes a while: start it first
        log("setup: catalog and keys (CLI) ...")
        self.keys = server_seed.prepare(self.kamicore.data_dir)
        log(f"setup: starting kamicore ({self.workers} workers) and do-nothing ({self.workers} "
            "processes) ...")
        self.kamicore.start()
        self.keys["admin"] = server_seed.admin_key(self.kamicore.data_dir)
        self.nothing_target, nothing = start_nothing(self.children, self.workers)
        self.nothing_pids = [process.pid for process in nothing]
        sold = self.plan.sold_codes(self.clients, self.workers)
        available = self.plan.available_codes(self.clients, self.workers)
        log(f"setup: importing {sold + available:,} codes over ImportCodes and selling "
            f"{sold:,} with CreateOrder + ConfirmPayment ...")
        self.sold = server_seed.seed(self.kamicore.target, self.keys, sold, available)
        self.seeded = sold + available
        self.setup_seconds = time.perf_counter() - started

    # -- inputs --------------------------------------------------------------------------------

    def next_sold(self, count: int) -> list[str]:
        codes = self.sold[self.sold_next:self.sold_next + count]
        expect(len(codes) == count, "out of SOLD codes: the plan's counts are off")
        self.sold_next += count
        return codes

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
        [replay_code] = self.next_sold(1)
        redeem = redemption_pb2.RedeemRequest(code=replay_code,
                                              request_id="h2load-replay").SerializeToString()
        verify = redemption_pb2.VerifyCodeRequest(code=replay_code).SerializeToString()
        with grpc.insecure_channel(self.kamicore.target) as channel:
            first = redemption_pb2.RedeemResponse.FromString(channel.unary_unary(METHOD_REDEEM)(
                redeem, metadata=bearer(self.keys["pos"]), timeout=30))
        expect(first.status == redemption_pb2.REDEEM_STATUS_REDEEMED, f"first redeem: {first}")
        bodies = {}
        self.messages = {"redeem": redeem, "verify": verify}
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
                             self.keys["pos"], requests)
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
                     unit: str, methods: tuple, measured: bool) -> None:
        """The same requests against kamicore, then do-nothing (its replies are empty)."""
        lanes = STREAMS_PER_PROCESS if kind == "stream" else IN_FLIGHT[key]
        key_name = "storefront" if kind == "orders" else "pos"
        for server, target in self.targets().items():
            figure = self.figure(f"{key}-{server}", label, server, "driver",
                                 items_per_call=items_per_call, unit=unit)
            kamicore = server == "kamicore"
            before = self.kamicore.metrics() if kamicore and measured else None
            cpu_before = self.server_cpu_seconds(server)
            outcome = self.pool.drive(target, kind, requests, self.keys[key_name], lanes,
                                      self.plan.job_deadline_seconds, decode=kamicore)
            server_cpu = self.server_cpu_seconds(server) - cpu_before
            items = outcome.calls * items_per_call
            if kamicore:
                expect(outcome.succeeded == items and not outcome.errors,
                       f"{key}: {outcome.succeeded:,} of {items:,} succeeded; "
                       f"errors {dict(outcome.errors)}")
            if not measured:
                continue
            figure.rates.append(items / outcome.seconds)
            figure.wall_seconds += outcome.seconds
            figure.latencies.extend(outcome.latencies)
            figure.calls += outcome.calls
            figure.items += items
            figure.succeeded += outcome.succeeded
            figure.errors.update(outcome.errors)
            figure.capped += outcome.capped
            figure.server_cpu_seconds += server_cpu
            if before is not None:
                self.add_server_metrics(figure, before, self.kamicore.metrics(), methods)

    def closed_round(self, bodies: dict, measured: bool) -> None:
        """One round of every closed-loop figure, each against kamicore then do-nothing."""
        plan, requests = self.plan, self.requests

        def scale(count: int) -> int:
            return count if measured else plan.warmup(count, self.clients)

        self.round_h2load(bodies, measured)
        self.round_driver("unary", "redeem", "Redeem, distinct codes",
                          requests.redeem(self.next_sold(scale(plan.unary))), 1, "calls/s",
                          (METHOD_REDEEM,), measured)
        self.round_driver("batch", "batch", "RedeemBatch, distinct codes",
                          requests.batch(self.next_sold(scale(plan.batch_calls) * BATCH_CODES)),
                          BATCH_CODES, "codes/s", (METHOD_BATCH,), measured)
        self.round_driver("stream", "stream", "RedeemStream, distinct codes",
                          requests.redeem(self.next_sold(scale(plan.stream))), 1, "codes/s",
                          (), measured)
        self.round_driver("orders", "orders", "CreateOrder + ConfirmPayment, 1 code",
                          requests.orders(scale(plan.orders)), 1, "orders/s",
                          (METHOD_CREATE, METHOD_CONFIRM), measured)

    def run(self) -> None:
        bodies = self.prepare_h2load()
        for measured in measured_rounds(self.plan.rounds):  # round 0 warms up every path of both
            self.closed_round(bodies, measured)
        self.open_loop = server_open_loop.run(self)
        self.scaling = server_scaling.run(self, bodies)
