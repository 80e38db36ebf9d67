"""Engine microbenchmark: what one durable write path costs, against the floor py-lmdb sets.

One run measures, on fresh data dirs under bench/results/tmp (same disk as the repo, removed at
the end):

- raw: the floor of a redeem in plain Python over py-lmdb - HMAC-SHA256 of the code through
  kamicore.keyring.LookupHasher, lookup get, record get, record put, request-id put - 256 codes
  per durable (sync) write transaction, over a store of N codes laid out like the engine's;
- the compiled engine (kamicore._engine) through the blocking Engine API, durable, everything
  included (validation, state checks, counters, audit chain, idempotency, group-commit handoff):
  redeem (1, 16, 256 distinct SOLD codes per call), reserve+confirm (orders of 1, 16, 256 codes:
  one reserve call then one confirm call per order) and import_codes (1, 16, 256 codes per call);
- the same per-item engine interpreted (ext/ run by CPython): redeem-256 and import-256.

The engine's store holds N SOLD codes (imported, reserved and confirmed during setup) before any
timing starts; the raw store holds the same N codes with records of the same size. Redeems take
codes in sale order (ascending code id: what was sold first is redeemed first), and again, for
the raw floor and the compiled redeem-256, in a seeded random order over the other half of the
store: scattered codes dirty a page each, so a commit writes ~256 pages instead of a dozen or two,
disk time no engine avoids. Request ids are per-terminal sequence numbers (fixed width, so they
append). Every figure runs in R rounds that interleave all scenarios (the machine is shared, so
drift hits every figure alike); a round's throughput is items / wall time of its calls, reported
as the median over rounds, with per-call latency p50/p99 over all calls of all rounds.

Usage: make bench-engine, or .venv/bin/python bench/engine_bench.py [--quick] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import common  # noqa: E402 - bench/common.py, beside this script

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("KAMICORE_EXT_DIR", str(REPO / "ext"))  # the interpreted engine's source

import lmdb  # noqa: E402

import kamicore  # noqa: E402
from kamicore import engine as engine_module, interpreted  # noqa: E402
from kamicore.engine import Engine  # noqa: E402
from kamicore.keyring import LookupHasher, new_data_key  # noqa: E402
from kamicore.statuses import (  # noqa: E402
    ConfirmStatus, ImportStatus, RedeemStatus, ReserveStatus,
)

RESULTS_FILE = REPO / "bench" / "RESULTS.md"
ENGINE_HEADING = "# Engine benchmark results"  # this script's block of RESULTS.md
TEMP_PARENT = REPO / "bench" / "results" / "tmp"  # git-ignored

# targets (DESIGN.md: the engine is never allowed to be the bottleneck)
redeem_target_codes_per_second = 200_000
redeem_target_fraction_of_raw = 0.8
import_target_codes_per_second = 200_000

SKU = "bench-sku"
TERMINAL = "bench-pos-1"
hold_seconds = 3600
setup_codes_per_import = 10_000
setup_codes_per_order = engine_module.codes_per_order_max  # 10,000: 10 lines of 1,000
random_seed = 20241122


# calls per measured round, by scenario key (see Bench.scenarios). Full: ~2.5 min on 2 slow
# cores, most of it in the 256-code figures; batch-1 figures are fsync-bound, so 2,000 calls.
CALLS_FULL = {
    "raw-256": 240, "redeem-1": 400, "redeem-16": 240, "redeem-256": 240,
    "redeem-256-interpreted": 60, "raw-256-random": 40, "redeem-256-random": 40,
    "import-1": 400, "import-16": 240, "import-256": 240, "import-256-interpreted": 60,
    "order-1": 200, "order-16": 160, "order-256": 60,
}
CALLS_QUICK = {
    "raw-256": 60, "redeem-1": 200, "redeem-16": 120, "redeem-256": 60,
    "redeem-256-interpreted": 24, "raw-256-random": 20, "redeem-256-random": 20,
    "import-1": 200, "import-16": 120, "import-256": 60, "import-256-interpreted": 24,
    "order-1": 100, "order-16": 80, "order-256": 24,
}
check_codes_max = 200_000  # Engine.check() after the run decrypts every code: small N only


@dataclass(frozen=True)
class Plan:
    """How much work: N codes in every store, calls per measured round, rounds."""

    calls: dict
    rounds: int
    stored_codes: int = 0  # N: SOLD codes in the engine's store and records in the raw store

    def warmup_calls(self, key: str) -> int:
        return max(1, self.calls[key] // 10)

    def consumed(self, key: str, size: int) -> int:
        """Codes a scenario takes over the warm-up and every measured round."""
        return (self.rounds * self.calls[key] + self.warmup_calls(key)) * size

    def with_stored_codes(self, stored_codes: int | None) -> "Plan":
        """N: twice what the redeems in either order consume (every redeem takes a distinct
        SOLD code; the random half is as large as the sale-order half), unless given."""
        in_sale_order = max(
            self.consumed("redeem-1", 1) + self.consumed("redeem-16", 16)
            + self.consumed("redeem-256", 256), self.consumed("redeem-256-interpreted", 256),
            self.consumed("raw-256", 256))
        in_random_order = max(self.consumed("redeem-256-random", 256),
                              self.consumed("raw-256-random", 256))
        needed = 2 * max(in_sale_order, in_random_order)
        needed = -(-needed * 11 // 10 // 10_000) * 10_000  # 10% spare, whole ten-thousands
        if stored_codes is not None:
            if stored_codes < needed:
                raise SystemExit(f"--codes: this plan needs at least {needed:,}")
            needed = stored_codes
        return Plan(self.calls, self.rounds, needed)


def code_of(prefix: bytes, number: int) -> bytes:
    """A 19-20 byte code in the usual dashed groups (normalisation has dashes to remove)."""
    return b"%s-%04X-%04X-%04X" % (prefix, number >> 32 & 0xFFFF, number >> 16 & 0xFFFF,
                                   number & 0xFFFF)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def expect(condition: bool, message: str) -> None:
    """A wrong answer from the engine ends the run (not an assert: python -O drops those)."""
    if not condition:
        raise RuntimeError(message)


def order_lines(count: int) -> list:
    """One sku's order lines for `count` codes, at most codes_per_line_max a line."""
    per_line = engine_module.codes_per_line_max
    return [(SKU, per_line)] * (count // per_line) + (
        [(SKU, count % per_line)] if count % per_line else [])


# -- measurement ----------------------------------------------------------------------------

@dataclass
class Figure:
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
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def call_rate(self) -> float:
        return statistics.median(self.call_rates) if self.call_rates else 0.0

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))  # nearest rank
        return ordered[rank - 1] * 1000


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


# -- the raw floor ----------------------------------------------------------------------------

class RawStore:
    """py-lmdb opened as the engine opens it, with the sub-databases a redeem touches."""

    def __init__(self, path: Path, hasher: LookupHasher):
        self.env = lmdb.open(str(path), map_size=engine_module.map_size_bytes_default,
                             max_dbs=engine_module.sub_databases_max,
                             max_readers=engine_module.readers_max, sync=True, metasync=True,
                             writemap=False, readahead=False, lock=True)
        self.codes = self.env.open_db(b"codes")
        self.lookup = self.env.open_db(b"lookup")
        self.redemptions = self.env.open_db(b"redemptions")
        self.hasher = hasher

    def populate(self, codes: list[bytes], record: bytes) -> None:
        """code i -> lookup HMAC -> 8-byte big-endian id i + 1 -> `record` (a real SOLD
        record copied from the engine's store, so values have the engine's size)."""
        for start in range(0, len(codes), setup_codes_per_import):
            with self.env.begin(write=True) as txn:
                lookups = []
                with txn.cursor(db=self.codes) as cursor:
                    for number in range(start, min(len(codes), start + setup_codes_per_import)):
                        key = (number + 1).to_bytes(8, "big")
                        cursor.put(key, record, append=True)
                        lookups.append((self.hasher(codes[number]), key))
                lookups.sort()
                with txn.cursor(db=self.lookup) as cursor:
                    cursor.putmulti(lookups)

    def redeem(self, items: list) -> int:
        """items: [(code, request key)]; one durable transaction. The floor: nothing but the
        reads and writes a redeem cannot avoid (no checks, counters, audit or replies)."""
        lookup_hash = self.hasher
        lookup_db, codes_db, redemptions_db = self.lookup, self.codes, self.redemptions
        with self.env.begin(write=True) as txn:
            get, put = txn.get, txn.put
            for code, request_key in items:
                digest = lookup_hash(code)
                key = get(digest, db=lookup_db)
                record = get(key, db=codes_db)
                put(key, record[:1] + b"\x04" + record[2:], db=codes_db)  # state: REDEEMED
                put(request_key, key + digest, db=redemptions_db)
        return len(items)

    def close(self) -> None:
        self.env.close()


# -- the benchmark ---------------------------------------------------------------------------

class Bench:
    def __init__(self, plan: Plan, root: Path):
        self.plan = plan
        self.root = root
        self.engines: list[Engine] = []
        self.raw: RawStore | None = None
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

    # -- lifecycle -----------------------------------------------------------------------

    def open_engine(self, path: Path, implementation: str) -> Engine:
        engine = Engine(path, implementation=implementation)
        self.engines.append(engine)
        return engine

    def close_engine(self, engine: Engine) -> None:
        engine.close()
        self.engines.remove(engine)

    def close(self) -> None:
        for engine in list(self.engines):
            try:
                self.close_engine(engine)
            except Exception as error:  # keep closing the others
                log(f"closing an engine failed: {error!r}")
        if self.raw is not None:
            self.raw.close()
            self.raw = None

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
        for start in range(0, n, setup_codes_per_order):
            order_id = f"setup-{start}"
            lines = order_lines(min(setup_codes_per_order, n - start))
            reserved, = engine.reserve([(order_id, lines, hold_seconds)])
            expect(reserved.status == ReserveStatus.RESERVED, f"setup: {reserved.status!r}")
            confirmed, = engine.confirm([order_id])
            expect(confirmed.status == ConfirmStatus.SOLD, f"setup: {confirmed.status!r}")
        with engine.read() as txn:
            # a SOLD record as stored, for the raw store's values
            sold_record = txn.get((1).to_bytes(8, "big"), db=engine.dbs.codes)
        counts = engine.stock(SKU).counts
        expect(counts[kamicore.CodeState.SOLD] == n, f"setup: {counts}")
        self.close_engine(engine)
        # the interpreted engine gets an identical copy of the store (same N, same layout)
        shutil.copytree(compiled_dir, interpreted_dir, ignore=shutil.ignore_patterns("lock.mdb"))
        log(f"setup: raw store of {n:,} records ({len(sold_record)} bytes each) ...")
        self.raw = RawStore(self.root / "raw", LookupHasher(new_data_key()))
        self.raw.populate(self.sold_codes, sold_record)
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

    def round_raw(self, key: str, size: int, calls: int, measured: bool,
                  order: str = "sale") -> None:
        figure = self.figure(key, f"raw floor, {order} order (latency per txn)", "raw", size,
                             calls_unit="txns/s")
        terminal = b"raw-pos\0"
        arguments = []
        for _ in range(calls):
            codes = self.next_sold("raw", order, size)
            arguments.append(([(code, terminal + request_id) for code, request_id in
                               zip(codes, self.request_ids(size))],))
        seconds, latencies, results = timed_calls(self.raw.redeem, arguments)
        expect(sum(results) == size * calls, f"{key}: {sum(results)} of {size * calls}")
        figure.add_round(size * calls, calls, seconds, latencies, measured)

    def round_redeem(self, key: str, size: int, calls: int, measured: bool,
                     implementation: str = "compiled", order: str = "sale") -> None:
        figure = self.figure(key, f"redeem, {order} order", implementation, size)
        engine = self.compiled if implementation == "compiled" else self.interpreted
        arguments = [(list(zip(self.next_sold(implementation, order, size),
                               self.request_ids(size))), TERMINAL) for _ in range(calls)]
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
        lines = order_lines(size)
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
        imports first (they add stock), the raw floor next to the compiled redeem-256."""
        return [
            ("import-1", self.round_import, 1, {}),
            ("import-16", self.round_import, 16, {}),
            ("import-256", self.round_import, 256, {}),
            ("import-256-interpreted", self.round_import, 256, {"implementation": "interpreted"}),
            ("order-1", self.round_orders, 1, {}),
            ("order-16", self.round_orders, 16, {}),
            ("order-256", self.round_orders, 256, {}),
            ("redeem-1", self.round_redeem, 1, {}),
            ("redeem-16", self.round_redeem, 16, {}),
            ("raw-256", self.round_raw, 256, {}),
            ("redeem-256", self.round_redeem, 256, {}),
            ("redeem-256-interpreted", self.round_redeem, 256, {"implementation": "interpreted"}),
            ("raw-256-random", self.round_raw, 256, {"order": "random"}),
            ("redeem-256-random", self.round_redeem, 256, {"order": "random"}),
        ]

    def run(self) -> None:
        plan = self.plan
        for round_number in range(plan.rounds + 1):
            measured = round_number > 0  # round 0 warms up (imports, caches, page tables)
            log(f"round {round_number}/{plan.rounds}" + ("" if measured else " (warm-up)"))
            for key, function, size, options in self.scenarios():
                calls = plan.calls[key] if measured else plan.warmup_calls(key)
                function(key, size, calls, measured, **options)
        if plan.stored_codes <= check_codes_max:
            for engine in (self.compiled, self.interpreted):
                problems = engine.check()
                expect(not problems, f"the store after the run: {problems}")


# -- report ------------------------------------------------------------------------------------

git_commit = common.git_commit

def machine() -> str:
    return common.machine(
        f"py-lmdb {lmdb.__version__} (LMDB {'.'.join(map(str, lmdb.version()))})")


def stale_warning() -> str:
    """The compiled package is what `make install` built; the interpreted engine runs the
    sources at KAMICORE_EXT_DIR, which may have moved on since."""
    compiled = list(Path(kamicore.__file__).parent.glob("_engine*.so"))
    if not compiled:
        return "kamicore._engine is not a compiled extension"
    ext_dir = interpreted.ext_dir()
    newest_source = max((ext_dir / "kamicore" / name).stat().st_mtime for name in ("_engine.py", "_codec.py"))
    if newest_source > compiled[0].stat().st_mtime:
        return (f"{ext_dir} is newer than the installed kamicore._engine: compiled and "
                "interpreted figures may be of different code (run make install)")
    return ""


def number(value: float) -> str:
    return f"{value:,.0f}"


def target_text(figure: Figure, raw: Figure) -> str:
    if figure.key == "redeem-256":
        fraction = figure.rate / raw.rate if raw.rate else 0.0
        met = (figure.rate >= redeem_target_codes_per_second
               and fraction >= redeem_target_fraction_of_raw)
        return (f"≥ {number(redeem_target_codes_per_second)} and ≥ "
                f"{redeem_target_fraction_of_raw:.1f}× raw: {'met' if met else 'MISSED'} "
                f"({fraction:.2f}× raw)")
    if figure.key == "import-256":
        met = figure.rate >= import_target_codes_per_second
        return f"≥ {number(import_target_codes_per_second)}: {'met' if met else 'MISSED'}"
    if figure.items_per_call == 1 and figure.implementation == "compiled":
        return "reported (fsync-bound)"
    return ""


def table(figures: dict) -> list[str]:
    raw = figures["raw-256"]
    lines = ["| figure | engine | codes/call | codes/s (median) | min–max over rounds "
             "| calls/s (median) | p50 ms | p99 ms | target (codes/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    order = ["raw-256", "redeem-1", "redeem-16", "redeem-256", "redeem-256-interpreted",
             "raw-256-random", "redeem-256-random", "order-1", "order-16", "order-256",
             "import-1", "import-16", "import-256", "import-256-interpreted"]
    for key in order:
        figure = figures[key]
        calls = f"{number(figure.call_rate)} {figure.calls_unit}"
        lines.append(
            f"| {figure.label} | {figure.implementation} | {figure.items_per_call} | "
            f"{number(figure.rate)} | {number(min(figure.rates))}–{number(max(figure.rates))} | "
            f"{calls} | {figure.percentile_ms(0.50):.2f} | {figure.percentile_ms(0.99):.2f} | "
            f"{target_text(figure, raw)} |")
    return lines


def ratios(figures: dict) -> dict:
    def ratio(top: str, bottom: str) -> float:
        below = figures[bottom].rate
        return figures[top].rate / below if below else 0.0
    return {
        "redeem_vs_raw": ratio("redeem-256", "raw-256"),
        "random_redeem_vs_raw": ratio("redeem-256-random", "raw-256-random"),
        "redeem_compiled_vs_interpreted": ratio("redeem-256", "redeem-256-interpreted"),
        "import_compiled_vs_interpreted": ratio("import-256", "import-256-interpreted"),
    }


def paired_ratios(top: Figure, bottom: Figure) -> str:
    """Round by round: both ran back to back, so these see the same machine."""
    return ", ".join(f"{high / low:.2f}" for high, low in zip(top.rates, bottom.rates))


def headline(figures: dict) -> str:
    return (f"redeem_codes_per_second={figures['redeem-256'].rate:.0f} "
            f"raw_loop_codes_per_second={figures['raw-256'].rate:.0f} "
            f"ratio={ratios(figures)['redeem_vs_raw']:.2f}")


def write_results(report: list[str], history_line: str) -> None:
    """This script's block of RESULTS.md: from ENGINE_HEADING to the next top-level heading or
    the server section. Its Latest part is replaced and its History gains a line; everything
    outside the block (the `make bench` summary above, the server section below) stays as is."""
    lines = RESULTS_FILE.read_text().splitlines() if RESULTS_FILE.exists() else []
    if ENGINE_HEADING in lines:
        start = lines.index(ENGINE_HEADING)
        end = next((index for index in range(start + 1, len(lines))
                    if lines[index].startswith("# ") or lines[index] == "## Server"),
                   len(lines))
    else:
        start = end = next((index for index, line in enumerate(lines) if line == "## Server"),
                           len(lines))
    history = [line for line in lines[start:end] if line.startswith("- ")
               and " · " in line and "N=" in line]
    history.append(history_line)
    block = [
        ENGINE_HEADING,
        "",
        "Written by `make bench-engine` (bench/engine_bench.py; its docstring says what is "
        "measured and how). The machine is shared and noisy: compare ratios taken in one run "
        "(engine vs raw floor, compiled vs interpreted) rather than absolutes across runs.",
        "",
        "## Latest",
        "",
        *report,
        "",
        "## History",
        "",
        *history,
        "",
    ]
    RESULTS_FILE.write_text("\n".join(lines[:start] + block + lines[end:]).rstrip("\n") + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run with a small N")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5)")
    parser.add_argument("--codes", type=int, default=None,
                        help="N, the SOLD codes in each store (default: what the plan needs)")
    options = parser.parse_args()
    plan = Plan(CALLS_QUICK if options.quick else CALLS_FULL,
                options.rounds or (3 if options.quick else 5)).with_stored_codes(options.codes)
    commit = git_commit()  # now: the tree may change while the run goes on
    warning = stale_warning()
    if warning:
        log(f"WARNING: {warning}")

    # SIGTERM (make interrupted, CI timeout) must still close engines and remove the temp dir
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    started_at = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    TEMP_PARENT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="engine-bench-", dir=TEMP_PARENT))
    bench = Bench(plan, root)
    try:
        bench.setup()
        bench.run()
    finally:
        bench.close()
        shutil.rmtree(root, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()

    figures = bench.figures
    measured = ratios(figures)
    date = started_at.strftime("%Y-%m-%d %H:%M UTC")
    report = [
        f"- date: {date}" + (" (quick run)" if options.quick else ""),
        f"- commit: {commit}",
        f"- machine: {machine()}; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after",
        f"- N = {plan.stored_codes:,} SOLD codes in each store (records of {bench.record_bytes} "
        f"bytes; engine data file {bench.data_file_mb:,.0f} MB after setup), {plan.rounds} "
        f"measured rounds after a warm-up; setup "
        f"{bench.setup_seconds:.0f} s, whole run {elapsed:.0f} s",
        "- every write is durable (sync=True: fsync per commit); one caller, so every call is "
        "its own commit; latency is per call (reserve+confirm: per order, both calls)",
    ]
    if warning:
        report.append(f"- WARNING: {warning}")
    report += [
        "",
        *table(figures),
        "",
        f"- engine redeem-256 / raw floor: {measured['redeem_vs_raw']:.2f} "
        f"(per round: {paired_ratios(figures['redeem-256'], figures['raw-256'])})",
        f"- in random order: engine / raw floor {measured['random_redeem_vs_raw']:.2f} (per round: "
        f"{paired_ratios(figures['redeem-256-random'], figures['raw-256-random'])})",
        f"- compiled / interpreted: redeem-256 {measured['redeem_compiled_vs_interpreted']:.2f}×, "
        f"import-256 {measured['import_compiled_vs_interpreted']:.2f}×",
    ]
    if not options.no_write:
        history_line = (
            f"- {date} · {commit}{' · quick' if options.quick else ''} · N={plan.stored_codes:,}"
            f" · redeem-256 {number(figures['redeem-256'].rate)} codes/s = "
            f"{measured['redeem_vs_raw']:.2f}× raw ({number(figures['raw-256'].rate)}) · "
            f"redeem-1 {number(figures['redeem-1'].rate)}/s · "
            f"order-256 {number(figures['order-256'].rate)} codes/s · "
            f"import-256 {number(figures['import-256'].rate)} codes/s · compiled/interpreted "
            f"{measured['redeem_compiled_vs_interpreted']:.2f}× redeem, "
            f"{measured['import_compiled_vs_interpreted']:.2f}× import")
        write_results(report + ["", "`" + headline(figures) + "`"], history_line)
        log(f"wrote {RESULTS_FILE.relative_to(REPO)}")
    print("\n".join(report))
    print(headline(figures))  # the last line: what scripts parse
    return 0


if __name__ == "__main__":
    sys.exit(main())
