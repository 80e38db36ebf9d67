"""Routing: which supplier route an order tries first, the circuit breaker, and the outcomes
every choice learns from.

Table `supplier_stats` (one table, three kinds of record):
- b"c" + supplier id -> the circuit breaker (JSON): failures in a row, the last one's time,
  open until, the half-open trial's deadline. In the data file, so every worker and the
  dispatcher see the same breaker.
- b"s" + supplier id + NUL + sku id -> the statistics (JSON): outcome counts, latency bucket
  counts (limits.supplier_latency_buckets_ms), cost of the successes, and the recent window.
- b"i" + supplier id + NUL + sku id + NUL + batch id + NUL + code id (8 bytes) -> nothing: one
  code of the batch reported invalid (one key per code, so a retried report counts once).

The breaker: limits.circuit_failures_to_open FAILED or UNKNOWN outcomes in a row, each within
limits.circuit_failure_window_seconds of the one before, open it for
limits.circuit_cool_down_seconds: its routes are left out of `ranked`. After the cool-down it
is half-open: `ranked` lists it while its one trial is free, and `claim` (in the commit that
records the attempt) takes the trial; a success closes it, a failure or unknown opens it
again. A NOT_FOUND answer and late callbacks leave it as it is.

The recent window (HIGHEST_SUCCESS_RATE and FASTEST): outcome, success and latency sums that
decay by half every limits.supplier_recent_half_life_seconds. A route's score starts from the
pooled average of the SKU's candidate routes with the weight of
limits.supplier_recent_prior_outcomes outcomes, so a supplier without recent outcomes ranks as
the average: neither favoured nor starved, and its own outcomes soon decide.
"""

from __future__ import annotations

import bisect
import json

from .. import limits
from ..statuses import CircuitState, RoutingStrategy
from . import catalog, suppliers
from .suppliers import SEPARATOR, Route

TABLE = "supplier_stats"
RESULTS = ("SUCCEEDED", "FAILED", "UNKNOWN", "NOT_FOUND")
_COUNTED = {"SUCCEEDED": "successes", "FAILED": "failures", "UNKNOWN": "unknown",
            "NOT_FOUND": "not_found"}
_HALF_LIFE_MS = limits.supplier_recent_half_life_seconds * 1000
_BUCKETS = limits.supplier_latency_buckets_ms


# -- records --------------------------------------------------------------------------------------

def circuit_key(supplier_id: str) -> bytes:
    return b"c" + supplier_id.encode()


def stats_key(supplier_id: str, sku_id: str) -> bytes:
    return b"s" + supplier_id.encode() + SEPARATOR + sku_id.encode()


def invalid_prefix(supplier_id: str, sku_id: str) -> bytes:
    return b"i" + supplier_id.encode() + SEPARATOR + sku_id.encode() + SEPARATOR


def _load(view, key: bytes) -> dict | None:
    value = view.get(TABLE, key)
    return json.loads(value) if value is not None else None


def _save(transaction, key: bytes, record: dict) -> None:
    transaction.put(TABLE, key, json.dumps(record, sort_keys=True).encode())


def new_stats() -> dict:
    return {"attempts": 0, "successes": 0, "failures": 0, "unknown": 0, "not_found": 0,
            "late": 0, "cost_micros": 0, "currency": "", "buckets": [0] * (len(_BUCKETS) + 1),
            "latency_max_ms": 0, "latency_sum_ms": 0,
            "recent": {"at_ms": 0, "outcomes": 0.0, "successes": 0.0, "latency_ms": 0.0,
                       "timed": 0.0}}


def stats(view, supplier_id: str, sku_id: str) -> dict | None:
    return _load(view, stats_key(supplier_id, sku_id))


# -- the circuit breaker --------------------------------------------------------------------------

_CLOSED = {"failures": 0, "last_failure_ms": 0, "open_until_ms": 0, "trial_until_ms": 0}


def _circuit(view, supplier_id: str) -> dict:
    return _load(view, circuit_key(supplier_id)) or dict(_CLOSED)


def circuit_state(record: dict, now_ms: int) -> CircuitState:
    if not record["open_until_ms"]:
        return CircuitState.CLOSED
    return CircuitState.OPEN if now_ms < record["open_until_ms"] else CircuitState.HALF_OPEN


def circuit(view, supplier_id: str, now_ms: int) -> tuple[CircuitState, dict]:
    """The breaker of `supplier_id` at `now_ms` -> (state, record)."""
    record = _circuit(view, supplier_id)
    return circuit_state(record, now_ms), record


def _may_call(record: dict, now_ms: int) -> bool:
    state = circuit_state(record, now_ms)
    return state == CircuitState.CLOSED or (
        state == CircuitState.HALF_OPEN and record["trial_until_ms"] <= now_ms)


def claim(transaction, supplier_id: str) -> bool:
    """Call in the commit that records an attempt on `supplier_id`: False when its breaker is
    open, or half-open with its one trial taken (try the next route); True otherwise, taking
    the trial when half-open."""
    now = transaction.now_ms
    record = _circuit(transaction, supplier_id)
    if not _may_call(record, now):
        return False
    if circuit_state(record, now) == CircuitState.HALF_OPEN:
        record["trial_until_ms"] = now + limits.circuit_trial_seconds * 1000
        _save(transaction, circuit_key(supplier_id), record)
    return True


def _trip(transaction, supplier_id: str, result: str) -> CircuitState | None:
    """The breaker after one outcome -> its new state when that changed, else None."""
    now = transaction.now_ms
    record = _circuit(transaction, supplier_id)
    before = circuit_state(record, now)
    if result == "SUCCEEDED":
        if not (record["failures"] or record["open_until_ms"] or record["trial_until_ms"]):
            return None  # closed with no failure counted: nothing to store
        record.update(failures=0, open_until_ms=0, trial_until_ms=0)
    elif result in ("FAILED", "UNKNOWN"):
        within = now - record["last_failure_ms"] <= limits.circuit_failure_window_seconds * 1000
        record["failures"] = record["failures"] + 1 if record["failures"] and within else 1
        record["last_failure_ms"] = now
        if before == CircuitState.HALF_OPEN or (
                before == CircuitState.CLOSED
                and record["failures"] >= limits.circuit_failures_to_open):
            record.update(open_until_ms=now + limits.circuit_cool_down_seconds * 1000,
                          trial_until_ms=0)
    else:
        return None
    _save(transaction, circuit_key(supplier_id), record)
    after = circuit_state(record, now)
    return after if after != before else None


# -- outcomes -------------------------------------------------------------------------------------

def _decayed(recent: dict, now_ms: int) -> dict:
    """The recent window as of `now_ms` (never moved back by an older clock)."""
    elapsed = max(0, now_ms - recent["at_ms"])
    factor = 0.5 ** (elapsed / _HALF_LIFE_MS) if recent["at_ms"] else 0.0
    return {"at_ms": max(now_ms, recent["at_ms"]),
            **{name: recent[name] * factor
               for name in ("outcomes", "successes", "latency_ms", "timed")}}


def record_outcome(transaction, supplier_id: str, sku_id: str, result: str, latency_ms: int,
                   cost_micros: int = 0, late: bool = False) -> CircuitState | None:
    """One outcome of a call to a supplier (or of a callback), in the caller's commit: the
    statistics and, unless `late`, the breaker. result: SUCCEEDED (cost_micros: what it cost,
    in the route's currency), FAILED, UNKNOWN (timeout, transport error, bad answer signature:
    never a failure) or NOT_FOUND (the supplier never received the request). `late`: a callback
    for an attempt already settled or failed over (counted apart, in late callbacks and cost).
    -> the breaker's new state when this outcome changed it (for metrics), else None."""
    assert result in RESULTS, result
    now = transaction.now_ms
    key = stats_key(supplier_id, sku_id)
    record = _load(transaction, key) or new_stats()
    if not record["currency"]:
        supplier = suppliers.read(transaction, supplier_id)
        route = supplier.route(sku_id) if supplier is not None else None
        sku = catalog.read(transaction, sku_id) if route is None else None
        record["currency"] = route.currency if route else (sku.currency if sku else "")
    if result == "SUCCEEDED":
        record["cost_micros"] += cost_micros
    if late:
        record["late"] += 1
        _save(transaction, key, record)
        return None
    record["attempts"] += 1
    record[_COUNTED[result]] += 1
    recent = _decayed(record["recent"], now)
    if result != "NOT_FOUND":  # the request never arrived: it says nothing of the supplier
        recent["outcomes"] += 1
        recent["successes"] += result == "SUCCEEDED"
    if latency_ms > 0:
        record["buckets"][bisect.bisect_left(_BUCKETS, latency_ms)] += 1
        record["latency_max_ms"] = max(record["latency_max_ms"], latency_ms)
        record["latency_sum_ms"] += latency_ms
        recent["latency_ms"] += latency_ms
        recent["timed"] += 1
    record["recent"] = recent
    _save(transaction, key, record)
    return _trip(transaction, supplier_id, result)


def record_invalid_code(transaction, sku_id: str, batch_id: str, supplier_id: str,
                        code_id: int) -> None:
    """A code of `batch_id` (delivered by `supplier_id`) reported invalid by its buyer; a
    repeated report of the same code counts once."""
    transaction.put(TABLE, invalid_prefix(supplier_id, sku_id) + batch_id.encode() + SEPARATOR
                    + code_id.to_bytes(8, "big"), b"")


# -- ranking --------------------------------------------------------------------------------------

def _recent(view, route: Route, now_ms: int) -> dict:
    record = stats(view, route.supplier_id, route.sku_id)
    if record is None:
        return {"outcomes": 0.0, "successes": 0.0, "latency_ms": 0.0, "timed": 0.0}
    return _decayed(record["recent"], now_ms)


def _smoothed(own: float, weight: float, pooled: float) -> float:
    prior = limits.supplier_recent_prior_outcomes
    return (own + prior * pooled) / (weight + prior)


def order(candidates: list[Route], strategy: RoutingStrategy,
          recent: dict[str, dict] | None = None) -> list[Route]:
    """`candidates` in `strategy`'s order; `recent`: supplier id -> its decayed window (the
    two statistics strategies). Ties: priority, then cost, then supplier id."""
    def tie(route: Route) -> tuple:
        return route.priority, route.cost_micros, route.supplier_id

    if strategy == RoutingStrategy.CHEAPEST:
        return sorted(candidates, key=lambda route: (route.cost_micros, *tie(route)))
    if strategy in (RoutingStrategy.HIGHEST_SUCCESS_RATE, RoutingStrategy.FASTEST):
        windows = [recent[route.supplier_id] for route in candidates]
        if strategy == RoutingStrategy.HIGHEST_SUCCESS_RATE:
            own, weight, sign = "successes", "outcomes", -1
        else:
            own, weight, sign = "latency_ms", "timed", 1
        total = sum(window[weight] for window in windows)
        pooled = sum(window[own] for window in windows) / total if total else 0.0
        scores = {route.supplier_id: sign * _smoothed(window[own], window[weight], pooled)
                  for route, window in zip(candidates, windows, strict=True)}
        return sorted(candidates, key=lambda route: (scores[route.supplier_id], *tie(route)))
    return sorted(candidates, key=tie)


def ranked(view, sku_id: str, now_ms: int) -> list[Route]:
    """The enabled routes of `sku_id` whose supplier may be called now (breaker closed, or
    half-open with its trial free), in the SKU's strategy order. Empty for an unknown SKU."""
    sku = catalog.read(view, sku_id)
    if sku is None:
        return []
    candidates = [route for route in suppliers.routes(view, sku_id)
                  if _may_call(_circuit(view, route.supplier_id), now_ms)]
    strategy = sku.routing_strategy
    recent = None
    if strategy in (RoutingStrategy.HIGHEST_SUCCESS_RATE, RoutingStrategy.FASTEST):
        recent = {route.supplier_id: _recent(view, route, now_ms) for route in candidates}
    return order(candidates, strategy, recent)


__all__ = ["RESULTS", "circuit", "circuit_state", "claim", "order", "ranked",
           "record_invalid_code", "record_outcome", "stats"]
