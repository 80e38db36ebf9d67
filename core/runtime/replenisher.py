"""The replenisher: the dispatcher's task that buys codes for SKUs below their low-stock
threshold (the requests of kamicore.domain.replenishment) and imports them.

Each tick it works on every open request that is due, one attempt each:
1. the attempt is committed before the call (its request id, supplier and product: the SKU's
   first route in its ranking that the circuit breaker lets through), or the unknown one is
   taken up again with the same request id;
2. PurchaseCodes goes to that supplier, outside any write transaction;
3. SUCCEEDED: the codes are imported through the engine's normal import (batch = the
   supplier's batch id, unit cost, supplier = the supplier id, valid_until) in the commit that
   closes the request;
   UNKNOWN or PENDING: the same request id is sent again after the backoff (the supplier
   sells once per request id); FAILED: the next attempt, after the backoff, gets a new
   request id (and may go to another supplier). Every attempt that did not deliver counts in
   kamicore_replenishment_failures_total{sku, supplier}.
Every `limits.replenishment_check_interval_seconds` it also runs the periodic check over the
catalog, which opens requests for stock that fell without an order (codes expired, frozen).

The codes never reach a log, a metric or an error: only counts, batch ids and costs do.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref

from .. import limits
from ..connectors import Result
from ..domain import catalog, replenishment, suppliers
from ..engine import InvalidArgument
from . import dispatcher as dispatcher_module

log = logging.getLogger("kamicore.replenisher")
ACTOR = "replenisher"


class ReplenisherMetrics:
    def __init__(self):
        from prometheus_client import Counter
        self.failures = Counter(
            "kamicore_replenishment_failures_total",
            "Replenishment purchase attempts that delivered no codes (failed, unknown outcome, "
            "no route, or an import refused), by SKU and supplier", ["sku", "supplier"])
        self.bought = Counter("kamicore_replenished_codes_total",
                              "Codes bought by replenishment and imported, by SKU and supplier",
                              ["sku", "supplier"])


_metrics: ReplenisherMetrics | None = None
_next_check: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # dispatcher -> monotonic


def _replenisher_metrics() -> ReplenisherMetrics:
    global _metrics
    if _metrics is None:  # created in the dispatcher process, after the metrics dir is set
        _metrics = ReplenisherMetrics()
    return _metrics


async def _run(engine, function, *args):
    return await engine.run_async(engine.plan(function, args, ACTOR, full=lambda: None))


async def check_catalog(engine) -> int:
    """The periodic check: the catalog read a page at a time without the writer; a commit only
    for a SKU that looks due, deciding again inside it -> requests opened."""
    start, opened = "", 0
    while True:
        due, start = replenishment.candidates(engine, start,
                                              limits.skus_per_replenishment_check_max)
        for sku_id in due:
            opened += await _run(engine, replenishment.check_sku, sku_id) is not None
        if not start:
            return opened


async def replenish(dispatcher) -> None:
    """One tick of the replenisher (a dispatcher TASK)."""
    engine = dispatcher.engine
    now = time.monotonic()
    if now >= _next_check.get(dispatcher, 0.0):
        _next_check[dispatcher] = now + limits.replenishment_check_interval_seconds
        await check_catalog(engine)
    now_ms = engine.now_ms()
    due = [record for record in replenishment.open_requests(engine)
           if record["next_try_ms"] <= now_ms]
    # one request per SKU: their attempts go out together, each settled in its own commits
    for record, outcome in zip(due, await asyncio.gather(
            *(attempt(dispatcher, record) for record in due), return_exceptions=True),
            strict=True):
        if isinstance(outcome, Exception):
            log.error("replenishment of %s: %s", record["sku_id"], type(outcome).__name__,
                      exc_info=outcome)


async def attempt(dispatcher, record: dict) -> dict | None:
    """One attempt on an open request -> the request as it stands after it."""
    engine = dispatcher.engine
    metrics = _replenisher_metrics()
    sku_id = record["sku_id"]
    record = await _run(engine, replenishment.begin_attempt, sku_id, record["number"])
    if record is None:
        return None
    if not record["request_id"]:
        metrics.failures.labels(sku_id, "").inc()
        log.warning("replenishment of %s: no supplier route may be called; retry in %d s",
                    sku_id, replenishment.backoff_ms(record["failures"]) // 1000)
        return record
    request, supplier_id = record["request_id"], record["supplier_id"]
    supplier = suppliers.read(engine, supplier_id)
    if supplier is None:  # removed since the attempt was recorded: a definite failure
        metrics.failures.labels(sku_id, supplier_id).inc()
        return await _run(engine, replenishment.record_failure, sku_id, request, "NOT_FOUND")
    purchase = await dispatcher.connector(supplier).purchase_codes(
        request, record["product"], record["quantity"])
    latency = purchase.latency_ms
    if purchase.result == Result.SUCCEEDED:
        return await _import(dispatcher, record, purchase)
    metrics.failures.labels(sku_id, supplier_id).inc()
    log.warning("replenishment of %s from %s: %s (%s)", sku_id, supplier_id,
                purchase.result.name, purchase.message[:limits.error_bytes_max])
    if purchase.result == Result.FAILED:
        return await _run(engine, replenishment.record_failure, sku_id, request, "FAILED",
                          latency)
    # UNKNOWN, PENDING, or NOT_FOUND (which a PurchaseCodes cannot answer: not trusted)
    return await _run(engine, replenishment.record_unknown, sku_id, request,
                      purchase.result.name, latency)


async def _import(dispatcher, record: dict, purchase) -> dict | None:
    """Import a successful purchase's codes and close the request, in one commit."""
    engine = dispatcher.engine
    metrics = _replenisher_metrics()
    sku_id, request, supplier_id = record["sku_id"], record["request_id"], record["supplier_id"]
    refusal = ""
    sku = catalog.read(engine, sku_id)
    if not purchase.codes or len(purchase.codes) > limits.codes_per_replenishment_max:
        refusal = f"{len(purchase.codes)} codes answered"
    elif sku is None or purchase.currency != sku.currency:  # unit costs are in the SKU's
        refusal = f"priced in {purchase.currency}, not the SKU's currency"
    else:
        try:
            terms = engine.check_import_terms(sku_id, purchase.batch_id, supplier_id,
                                              purchase.unit_cost_micros, 0,
                                              purchase.valid_until_ms or None)
        except InvalidArgument as error:  # the supplier's batch terms (never a code)
            refusal = f"{error.field}: {error.message}"
    if not refusal:
        closed = await _run(engine, replenishment.deliver, sku_id, request, {
            "codes": list(purchase.codes), "batch_id": purchase.batch_id,
            "unit_cost_micros": purchase.unit_cost_micros, "currency": purchase.currency,
            "valid_until_ms": terms[5]}, purchase.latency_ms)
        if closed is None or closed["state"] == replenishment.CLOSED:
            if closed is not None:
                metrics.bought.labels(sku_id, supplier_id).inc(closed["imported"])
            return closed
        refusal = closed["last_result"]
        metrics.failures.labels(sku_id, supplier_id).inc()
    else:
        metrics.failures.labels(sku_id, supplier_id).inc()
        await _run(engine, replenishment.record_unknown, sku_id, request, "IMPORT_REFUSED")
    # bought but not imported: the same request id again later (the supplier answers it with
    # the same codes, selling nothing more); an operator sees the metric and the log
    log.error("replenishment of %s from %s: codes bought but not imported (%s); retrying the "
              "same request", sku_id, supplier_id, refusal)
    return replenishment.read(engine, sku_id)


dispatcher_module.TASKS.append(replenish)
