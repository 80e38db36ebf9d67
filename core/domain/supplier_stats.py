"""A supplier's statistics as GetSupplierStats and the metrics show them: read from the
records kamicore.domain.routing keeps (one snapshot of the data file, never the writer)."""

from __future__ import annotations

import dataclasses
import math

from .. import limits
from ..engine import Engine
from ..engine.validate import text
from ..statuses import CircuitState, CodeState
from . import routing, suppliers
from .suppliers import SEPARATOR

_DELIVERED = (CodeState.SOLD, CodeState.REDEEMED, CodeState.INVALID)


@dataclasses.dataclass(frozen=True)
class BatchInvalid:
    batch_id: str
    invalid_codes: int
    delivered_codes: int

    @property
    def invalid_rate(self) -> float:
        return self.invalid_codes / self.delivered_codes if self.delivered_codes else 0.0


@dataclasses.dataclass(frozen=True)
class SkuStats:
    sku_id: str
    attempts: int
    successes: int
    failures: int
    unknown: int
    not_found: int
    latency_p50_ms: int
    latency_p90_ms: int
    latency_p99_ms: int
    late_callbacks: int
    cost_micros: int
    currency: str
    batches: tuple[BatchInvalid, ...] = ()
    batches_omitted: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0


@dataclasses.dataclass(frozen=True)
class SupplierStats:
    circuit: CircuitState
    open_until_ms: int  # OPEN: when the cool-down ends; else 0
    consecutive_failures: int
    skus: tuple[SkuStats, ...]
    skus_omitted: int


def percentile(buckets: list[int], latency_max_ms: int, fraction: float) -> int:
    """The latency (ms) under which `fraction` of the timed outcomes fell: the upper bound of
    the bucket holding that rank (the slowest seen, past the last bucket); 0 with none."""
    total = sum(buckets)
    if not total:
        return 0
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            bounds = limits.supplier_latency_buckets_ms
            return min(bounds[index], latency_max_ms) if index < len(bounds) else latency_max_ms
    return latency_max_ms


def _prefixed(engine: Engine, prefix: bytes):
    """Every (key, value) of supplier_stats whose key starts with `prefix`, in key order."""
    return suppliers.scan_prefix(engine, routing.TABLE, prefix, 2**62)


def invalid_by_batch(engine: Engine, supplier_id: str, sku_id: str
                     ) -> tuple[list[BatchInvalid], int]:
    """Batches with invalid-code reports, the most reported first (then by id), at most
    limits.supplier_stats_batches_listed_max -> (batches, how many more)."""
    counts: dict[str, int] = {}
    prefix = routing.invalid_prefix(supplier_id, sku_id)
    for key, _ in _prefixed(engine, prefix):
        batch = bytes(key[len(prefix):-9]).decode()  # batch id, NUL, code id (8 bytes)
        counts[batch] = counts.get(batch, 0) + 1
    if not counts:
        return [], 0
    delivered = {batch.batch: sum(batch.counts.get(state, 0) for state in _DELIVERED)
                 for batch in engine.batch_stock(sku_id)}
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    listed = limits.supplier_stats_batches_listed_max
    return ([BatchInvalid(batch, count, delivered.get(batch, 0))
             for batch, count in ordered[:listed]], max(0, len(ordered) - listed))


def sku_stats(engine: Engine, supplier_id: str, sku_id: str, record: dict) -> SkuStats:
    buckets, latency_max = record["buckets"], record["latency_max_ms"]
    batches, omitted = invalid_by_batch(engine, supplier_id, sku_id)
    return SkuStats(
        sku_id, record["attempts"], record["successes"], record["failures"], record["unknown"],
        record["not_found"], percentile(buckets, latency_max, 0.50),
        percentile(buckets, latency_max, 0.90), percentile(buckets, latency_max, 0.99),
        record["late"], record["cost_micros"], record["currency"], tuple(batches), omitted)


def _sku_ids(engine: Engine, supplier_id: str) -> list[str]:
    """SKUs with outcomes or invalid-code reports for this supplier, in id order."""
    found = set()
    for kind in (b"s", b"i"):
        prefix = kind + supplier_id.encode() + SEPARATOR
        for key, _ in _prefixed(engine, prefix):
            found.add(bytes(key[len(prefix):]).split(SEPARATOR)[0].decode())
    return sorted(found)


def report(engine: Engine, supplier_id: str, sku_id: str = "") -> SupplierStats | None:
    """A supplier's breaker and figures per SKU (only `sku_id`'s when given); None when no
    such supplier."""
    text(supplier_id, "supplier_id", limits.name_bytes_max)
    text(sku_id, "sku_id", limits.name_bytes_max, required=False)
    if suppliers.read(engine, supplier_id) is None:
        return None
    now = engine.now_ms()
    state, breaker = routing.circuit(engine, supplier_id, now)
    sku_ids = [sku_id] if sku_id else _sku_ids(engine, supplier_id)
    listed = limits.supplier_stats_skus_listed_max
    skus = []
    for sku in sku_ids[:listed]:
        record = routing.stats(engine, supplier_id, sku) or routing.new_stats()
        skus.append(sku_stats(engine, supplier_id, sku, record))
    streak = breaker["failures"] if state != CircuitState.CLOSED or now - breaker[
        "last_failure_ms"] <= limits.circuit_failure_window_seconds * 1000 else 0
    return SupplierStats(state, breaker["open_until_ms"] if state == CircuitState.OPEN else 0,
                         streak, tuple(skus), max(0, len(sku_ids) - listed))


__all__ = ["BatchInvalid", "SkuStats", "SupplierStats", "percentile", "report"]
