"""The engine benchmark's stores and scenarios: setup (N SOLD codes in the engine's store, the
same N in the C floor's), the inputs every call takes, and one round of each figure."""

from __future__ import annotations

import gc
import itertools
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import kamicore_access
from c_floor import IMPORT_PER_TXN, CFloor
from common import Rounds, code_of, expect, log, measured_rounds, median
from engine_plan import Plan, check_codes_max
from engine_stock import hold_seconds, order_lines, sell
from kamicore import (
    CodeState,
    ConfirmStatus,
    Engine,
    ImportStatus,
    RedeemStatus,
    ReserveStatus,
    VerifyStatus,
)

SKU = "bench-sku"
TERMINAL = "bench-pos-1"
setup_codes_per_import = 10_000
random_seed = 20241122


@dataclass
class Figure(Rounds):
    """One line of the table: per-round throughputs and every call's latency."""

    key: str
    label: str
    implementation: str
    items_per_call: int
    calls_unit: str = "calls/s"
    rates: list = field(default_factory=list)  # items/s, one per measured round
    call_rates: list = field(default_factory=list)  # calls (or orders)/s, one per round
    latencies: list = field(default_factory=list)  # seconds, every measured call

    def add_round(self, items: int, calls: int, seconds: float, latencies: list,
                  measured: bool) -> None:
        if measured:
            self.rates.append(items / seconds)
            self.call_rates.append(calls / seconds)
            self.latencies.extend(latencies)

    @property
    def call_rate(self) -> float:
        return median(self.call_rates)


def timed_calls(function, argument_lists: list) -> tuple[float, list, list]:
    """Call `function(*args)` for each args; -> (wall seconds, per-call seconds, results)."""
    clock = time.perf_counter
    latencies = []
    results = []
    gc.collect()  # start every timed round from the same heap state
    started = clock()
    for args in argument_lists:
        before = clock()
        results.append(function(*args))
        latencies.append(clock() - before)
    return clock() - started, latencies, results


class Bench:
    def __init__(self, plan: Plan, root: Path):
        self.plan = plan
        self.root = root
        self.engines: list[Engine] = []
        self.floor: CFloor | None = None
        self.verify_next = 0
        self.request_number = 0
        self.order_number = 0
        self.import_numbers: dict[bytes, int] = {}
        n = plan.stored_codes
        self.sold_codes = [code_of(b"SOLD", number) for number in range(n)]
        # code i has code id i + 1 in every store; sale order takes the first half upwards,
        # random order a shuffle of the second half (the same shuffle in every store)
        scattered = list(range(n // 2, n))
        random.Random(random_seed).shuffle(scattered)
        self.redeem_orders = {"sale": range(n // 2), "random": scattered}
        self.redeem_next = {}  # (store, order) -> next position
        self.figures: dict[str, Figure] = {}
        self.setup_seconds = 0.0
        self.floor_info: dict = {}

    # -- lifecycle -----------------------------------------------------------------------

    def open_engine(self, path: Path, implementation: str) -> Engine:
        engine = kamicore_access.open_engine(path, implementation)
        self.engines.append(engine)
        return engine

    def close_engine(self, engine: Engine) -> None:
        engine.close()
        self.engines.remove(engine)

    def close(self) -> None:
        for engine in list(self.engines):
            try:
                self.close_engine(engine)
            except Exception as error:  # noqa: BLE001 - keep closing the others
                log(f"closing an engine failed: {error!r}")
        if self.floor is not None:
            self.floor.close()
            self.floor = None

    # -- setup -----------------------------------------------------------------------------

    def setup(self) -> None:
        started = time.perf_counter()
        n = self.plan.stored_codes
        compiled_dir = self.root / "engine-compiled"
        interpreted_dir = self.root / "engine-interpreted"
        log(f"setup: importing {n:,} codes and selling them (reserve + confirm) ...")
        engine = self.open_engine(compiled_dir, "compiled")
        for start in range(0, n, setup_codes_per_import):
            result = engine.import_codes(SKU, "setup-sold",
                                         self.sold_codes[start:start + setup_codes_per_import])
            expect(result.status == ImportStatus.OK
                   and result.imported == len(result.statuses), f"setup import: {result.status!r}")
        # AVAILABLE stock for the reserve figures (imports add more as they run)
        stock = sum(self.plan.consumed(key, size)
                    for key, size in (("order-1", 1), ("order-16", 16), ("order-256", 256)))
        for start in range(0, stock, setup_codes_per_import):
            count = min(setup_codes_per_import, stock - start)
            result = engine.import_codes(SKU, "setup-stock", [
                code_of(b"STCK", number) for number in range(start, start + count)])
            expect(result.imported == count, f"setup import: {result.status!r}")
        # FEFO picks the lowest code ids first: exactly the SOLD-* codes imported first
        sell(engine, SKU, n, (f"setup-{number}" for number in itertools.count()))
        sold_record = kamicore_access.stored_code_record(engine, 1)  # the C floor's record size
        counts = engine.stock(SKU).counts
        expect(counts[CodeState.SOLD] == n, f"setup: {counts}")
        self.close_engine(engine)
        # the interpreted engine gets an identical copy of the store (same N, same layout)
        shutil.copytree(compiled_dir, interpreted_dir, ignore=shutil.ignore_patterns("lock.mdb"))
        log(f"setup: the C floor's store of {n:,} records ({len(sold_record)} bytes each) ...")
        self.floor = CFloor(self.root / "c-floor", n, len(sold_record),
                            kamicore_access.map_size_bytes)
        self.floor_info = self.floor.info
        self.compiled = self.open_engine(compiled_dir, "compiled")
        self.interpreted = self.open_engine(interpreted_dir, "interpreted")
        os.sync()  # setup's writes must not be flushed on the measured commits' time
        self.setup_seconds = time.perf_counter() - started
        self.record_bytes = len(sold_record)
        self.data_file_mb = (compiled_dir / "data.mdb").stat().st_size / 1e6

    # -- inputs ----------------------------------------------------------------------------

    def next_sold(self, store: str, order: str, count: int) -> list[bytes]:
        """`count` SOLD codes of `store` not redeemed yet, in sale or random order."""
        start = self.redeem_next.get((store, order), 0)
        numbers = self.redeem_orders[order][start:start + count]
        if len(numbers) < count:
            raise RuntimeError(f"{store}: out of SOLD codes; raise N (--codes)")
        self.redeem_next[(store, order)] = start + count
        return [self.sold_codes[number] for number in numbers]

    def request_ids(self, count: int) -> list[bytes]:
        """A terminal's sequence numbers: fixed width, so each new key sorts last."""
        first = self.request_number
        self.request_number += count
        return [b"%012d" % number for number in range(first, first + count)]

    def new_codes(self, prefix: bytes, count: int) -> list[bytes]:
        first = self.import_numbers.get(prefix, 0)
        self.import_numbers[prefix] = first + count
        return [code_of(prefix, number) for number in range(first, first + count)]

    # -- scenarios (one round each) --------------------------------------------------------------

    def figure(self, key: str, label: str, implementation: str, size: int, **options) -> Figure:
        if key not in self.figures:
            self.figures[key] = Figure(key, label, implementation, size, **options)
        return self.figures[key]

    def round_floor(self, key: str, size: int, calls: int, measured: bool,
                    figure_name: str = "redeem sale") -> None:
        """The C floor: `calls` transactions of `size` codes (it keeps its own inputs)."""
        label = {"redeem sale": "C floor: redeem, sale order", "lookups": "C floor: lookups only",
                 "redeem random": "C floor: redeem, random order", "import": "C floor: import"
                 }[figure_name]
        figure = self.figure(key, label + " (latency per txn)", "C", size, calls_unit="txns/s")
        codes, seconds, latencies = self.floor.round(figure_name, calls)
        expect(codes == size * calls, f"{key}: {codes} of {size * calls}")
        figure.add_round(codes, calls, seconds, latencies, measured)

    def round_verify(self, key: str, size: int, calls: int, measured: bool) -> None:
        """VerifyCode's engine call on SOLD codes in id order, round the store as it goes."""
        figure = self.figure(key, "verify, id order", "compiled", size)
        n, first = self.plan.stored_codes, self.verify_next
        self.verify_next += size * calls
        arguments = [([self.sold_codes[(first + call * size + i) % n] for i in range(size)],)
                     for call in range(calls)]
        seconds, latencies, results = timed_calls(self.compiled.verify, arguments)
        found = sum(result.status == VerifyStatus.FOUND
                    for per_call in results for result in per_call)
        expect(found == size * calls, f"{key}: {found} of {size * calls} found")
        figure.add_round(size * calls, calls, seconds, latencies, measured)

    def round_redeem(self, key: str, size: int, calls: int, measured: bool,
                     implementation: str = "compiled", order: str = "sale") -> None:
        figure = self.figure(key, f"redeem, {order} order", implementation, size)
        engine = self.compiled if implementation == "compiled" else self.interpreted
        arguments = [(list(zip(self.next_sold(implementation, order, size),
                               self.request_ids(size), strict=True)), TERMINAL)
                     for _ in range(calls)]
        seconds, latencies, results = timed_calls(engine.redeem, arguments)
        redeemed = sum(result.status == RedeemStatus.REDEEMED
                       for per_call in results for result in per_call)
        expect(redeemed == size * calls, f"{key}: {redeemed} of {size * calls} redeemed")
        figure.add_round(size * calls, calls, seconds, latencies, measured)

    def round_import(self, key: str, size: int, calls: int, measured: bool,
                     implementation: str = "compiled") -> None:
        figure = self.figure(key, "import", implementation, size)
        engine = self.compiled if implementation == "compiled" else self.interpreted
        prefix = b"I%03d" % size if implementation == "compiled" else b"J%03d" % size
        batch = f"import-{size}"
        arguments = [(SKU, batch, self.new_codes(prefix, size)) for _ in range(calls)]
        seconds, latencies, results = timed_calls(engine.import_codes, arguments)
        imported = sum(result.imported for result in results)
        expect(imported == size * calls, f"{key}: {imported} of {size * calls} imported")
        figure.add_round(size * calls, calls, seconds, latencies, measured)

    def round_orders(self, key: str, size: int, calls: int, measured: bool) -> None:
        figure = self.figure(key, "reserve+confirm (latency per order: both calls)", "compiled",
                             size, calls_unit="orders/s")
        engine = self.compiled
        lines = order_lines(SKU, size)
        order_ids = []
        for _ in range(calls):
            self.order_number += 1
            order_ids.append(f"order-{self.order_number}")

        def reserve_and_confirm(order_id: str):
            reserved, = engine.reserve([(order_id, lines, hold_seconds)])
            confirmed, = engine.confirm([order_id])
            return reserved, confirmed

        seconds, latencies, results = timed_calls(reserve_and_confirm,
                                                  [(order_id,) for order_id in order_ids])
        for reserved, confirmed in results:
            expect(reserved.status == ReserveStatus.RESERVED, f"{key}: {reserved.status!r}")
            expect(confirmed.status == ConfirmStatus.SOLD and len(confirmed.code_ids) == size,
                   f"{key}: {confirmed.status!r}")
        figure.add_round(size * calls, calls, seconds, latencies, measured)

    def scenarios(self) -> list:
        """(key, round function, items per call, options), in the order each round runs them:
        imports first (they add stock), each C floor next to the engine figure it bounds."""
        return [
            ("import-1", self.round_import, 1, {}),
            ("import-16", self.round_import, 16, {}),
            ("import-256", self.round_import, 256, {}),
            ("import-256-interpreted", self.round_import, 256, {"implementation": "interpreted"}),
            ("floor-import-10000", self.round_floor, IMPORT_PER_TXN, {"figure_name": "import"}),
            ("import-10000", self.round_import, IMPORT_PER_TXN, {}),
            ("order-1", self.round_orders, 1, {}),
            ("order-16", self.round_orders, 16, {}),
            ("order-256", self.round_orders, 256, {}),
            ("redeem-1", self.round_redeem, 1, {}),
            ("redeem-16", self.round_redeem, 16, {}),
            ("floor-256", self.round_floor, 256, {}),
            ("redeem-256", self.round_redeem, 256, {}),
            ("redeem-256-interpreted", self.round_redeem, 256, {"implementation": "interpreted"}),
            ("floor-256-random", self.round_floor, 256, {"figure_name": "redeem random"}),
            ("redeem-256-random", self.round_redeem, 256, {"order": "random"}),
            ("floor-lookups-256", self.round_floor, 256, {"figure_name": "lookups"}),
            ("verify-256", self.round_verify, 256, {}),
        ]

    def run(self) -> None:
        plan = self.plan
        for measured in measured_rounds(plan.rounds):  # round 0: imports, caches, page tables
            for key, function, size, options in self.scenarios():
                calls = plan.calls[key] if measured else plan.warmup_calls(key)
                function(key, size, calls, measured, **options)
        if plan.stored_codes <= check_codes_max:
            for engine in (self.compiled, self.interpreted):
                problems = engine.check()
                expect(not problems, f"the store after the run: {problems}")
