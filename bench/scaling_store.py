"""A kamicore data dir filled straight through the engine while no server runs: catalog, one key
per role, codes imported in chunks of 10,000 (one durable commit each, what `kamicore import`
does), codes sold (reserve + confirm) with their plaintexts kept for redeeming. The scaling
benchmark grows its pools this way, and `make bench` seeds the Locust run with it."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import kamicore_access
from common import code_of, expect, log
from engine_stock import sell
from kamicore import Engine, ImportStatus
from rpcs import CHANNEL, CURRENCY, PRICES

SKU = "scale-gift-50"
TERMINAL = "T-SCALE"
import_chunk_codes = 10_000  # codes per engine call (one durable commit), as `kamicore import`


class Store:
    """A kamicore data dir filled directly with the engine (the server is not running)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.codes = 0  # imported so far
        self.sold: list[str] = []  # plaintexts of SOLD codes not used yet
        self.keys: dict[str, str] = {}
        self.order_ids = (f"bench-sale-{number}" for number in itertools.count(1))

    def engine(self) -> Engine:
        return Engine(self.data_dir)

    def prepare(self, skus: dict[str, int] | None = None) -> None:
        """SKUs (with prices for web and partner) and one key per role."""
        with self.engine() as engine:
            for sku_id in skus or {SKU: 0}:
                kamicore_access.create_sku(engine, sku_id, CURRENCY, "50.00", PRICES)
            for role, binding in (("pos", TERMINAL), ("storefront", CHANNEL), ("partner", ""),
                                  ("admin", "")):
                self.keys[role] = kamicore_access.create_key(engine, role, binding,
                                                             "scaling bench")

    def import_to(self, total: int, sku: str = SKU, prefix: str = "SCAL",
                  deadline: float = float("inf")) -> dict:
        """Import codes until the store holds `total` (or the deadline passes); the rate."""
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
        started = time.perf_counter()
        with self.engine() as engine:
            self.sold.extend(sell(engine, sku, count, self.order_ids, reveal=True))
        return time.perf_counter() - started

    def take_sold(self, count: int) -> list[str]:
        expect(len(self.sold) >= count, f"out of SOLD codes ({len(self.sold)} < {count})")
        codes, self.sold = self.sold[:count], self.sold[count:]
        return codes
