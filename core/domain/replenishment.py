"""Replenishment: when a code SKU's sellable stock falls below its low-stock threshold, ONE
purchase request for `replenish_quantity` codes goes to its preferred supplier.

One record per SKU in the `replenishments` table (sku id -> JSON) holds the SKU's latest
request. A request is opened inside a commit that sees sellable stock below the threshold and
no open request (the test and the write are in that one commit, and LMDB serialises every
worker's commits), so however many orders, workers or periodic checks cross the threshold at
once, exactly one request is open; the next one can open only after it is closed.

An open request goes through attempts (kamicore.runtime.replenisher makes the calls, outside
any write transaction). Each attempt's request id - the supplier's idempotency key - is
committed here BEFORE the call; after a crash, or when the answer was lost (UNKNOWN: a timeout,
a transport error, an unverifiable answer), the same id goes to the same supplier again, so the
supplier sells once. Only a definite failure ends an attempt: the next one gets a new id (and
may go to another supplier) after a backoff that doubles per failure. A success is imported
through the engine's import (batch = the supplier's batch id, its unit cost, supplier = the
supplier id) in the same commit that closes the request, so it is imported once.
No code ever enters a record here: only counts, the supplier's batch id and its cost.
"""

from __future__ import annotations

import json

from .. import limits
from ..statuses import DeliveryKind, ImportCodeStatus, ImportStatus
from . import catalog, events, routing, stock_alerts

TABLE = "replenishments"
OPEN = "open"
CLOSED = "closed"
REQUEST_ID_PREFIX = "replenish"


def wanted(sku: catalog.Sku) -> bool:
    """Whether `sku` is replenished at all."""
    return bool(sku.replenish_quantity and sku.low_stock_threshold
                and sku.delivery_kind == DeliveryKind.CODE and not sku.buy_on_payment)


def read(view, sku_id: str) -> dict | None:
    """A SKU's latest request (open or closed); view: a transaction or an engine."""
    value = view.get(TABLE, sku_id.encode())
    return json.loads(value) if value is not None else None


def _put(transaction, record: dict) -> dict:
    transaction.put(TABLE, record["sku_id"].encode(),
                    json.dumps(record, sort_keys=True).encode())
    return record


def check(transaction, sku: catalog.Sku, bounded: bool = True) -> dict | None:
    """Open a request for `sku` when its sellable stock, as this commit sees it, is below its
    threshold and it has none open -> the opened request, or None. bounded: counting stock
    passes at most limits.sellable_keys_counted_max expired or not-yet-valid codes (an
    order's commit); past that it decides nothing."""
    if not wanted(sku):
        return None
    latest = read(transaction, sku.sku_id)
    if latest is not None and latest["state"] == OPEN:
        return None
    sellable = transaction.sellable(sku.sku_id.encode(),
                                    limits.sellable_keys_counted_max if bounded else None)
    if sellable is None or sellable >= sku.low_stock_threshold:
        return None  # None: too many expired codes to count here (the periodic check will)
    return _put(transaction, {
        "sku_id": sku.sku_id, "number": (latest["number"] + 1) if latest else 1,
        "state": OPEN, "quantity": sku.replenish_quantity, "opened_ms": transaction.now_ms,
        "sellable_at_open": sellable, "attempts": 0, "failures": 0, "request_id": "",
        "supplier_id": "", "product": "", "next_try_ms": transaction.now_ms,
        "last_result": ""})


def after_reserve(transaction, skus: dict) -> None:
    """CreateOrder's hook: the reservation just made may have crossed a threshold."""
    for sku in skus.values():
        stock_alerts.check(transaction, sku)
        check(transaction, sku)


def check_sku(transaction, sku_id: str) -> dict | None:
    """The periodic check of one SKU (stock also falls without orders: codes expire, get
    frozen or voided; a threshold may be raised) -> the request it opened, or None."""
    sku = catalog.read(transaction, sku_id)  # counted in full: a snapshot said it is due
    return check(transaction, sku, bounded=False) if sku is not None else None


def candidates(engine, start: str, page: int) -> tuple[list[str], str]:
    """A page of the catalog read without the writer -> (the SKUs that look due for a request:
    replenished, none open, sellable below the threshold; the next page's start, "" at the
    end). check_sku decides in the commit."""
    found = engine.scan(catalog.TABLE, start.encode(), page + 1)
    due = []
    for _, value in found[:page]:
        sku = catalog.Sku.decode(value)
        if not wanted(sku):
            continue
        latest = read(engine, sku.sku_id)
        if latest is not None and latest["state"] == OPEN:
            continue
        stock = engine.stock(sku.sku_id)
        if (stock.sellable if stock is not None else 0) < sku.low_stock_threshold:
            due.append(sku.sku_id)
    return due, (bytes(found[page][0]).decode() if len(found) > page else "")


def open_requests(view, limit: int = limits.replenishments_per_pass_max) -> list[dict]:
    """Open requests in SKU order (at most `limit` of them)."""
    requests, start = [], b""
    while len(requests) < limit:
        found = view.scan(TABLE, start, limit)
        for _, value in found:
            record = json.loads(value)
            if record["state"] == OPEN:
                requests.append(record)
        if len(found) < limit:
            break
        start = found[-1][0] + b"\0"
    return requests[:limit]


def request_id(record: dict, attempt: int) -> str:
    return f"{REQUEST_ID_PREFIX}/{record['sku_id']}/{record['number']}/{attempt}"


def begin_attempt(transaction, sku_id: str, number: int) -> dict | None:
    """The attempt to make now, committed before its call: the one whose outcome is unknown
    (same request id, same supplier), or a new one to the first route of the SKU's ranking
    whose circuit breaker lets it be called (kamicore.domain.routing). None when the request
    is no longer open (or is closed now: its SKU no longer replenishes); request_id "" when
    no route may be called (counted as a failure: the next try comes after the backoff)."""
    record = read(transaction, sku_id)
    if record is None or record["state"] != OPEN or record["number"] != number:
        return None
    if record["request_id"]:
        return record
    sku = catalog.read(transaction, sku_id)
    if sku is None or not wanted(sku):  # turned off since it opened, and nothing in flight
        record.update(state=CLOSED, closed_ms=transaction.now_ms, last_result="CANCELLED")
        _put(transaction, record)
        return None
    for route in routing.ranked(transaction, sku_id, transaction.now_ms):
        if routing.claim(transaction, route.supplier_id):
            record["attempts"] += 1
            record.update(request_id=request_id(record, record["attempts"]),
                          supplier_id=route.supplier_id, product=route.product,
                          sent_ms=transaction.now_ms)
            return _put(transaction, record)
    record["failures"] += 1
    record.update(supplier_id="", product="", last_result="NO_ROUTE",
                  next_try_ms=transaction.now_ms + backoff_ms(record["failures"]))
    return _put(transaction, record)


def backoff_ms(failures: int) -> int:
    """Delay before the next attempt after `failures` failures in a row (doubling, capped)."""
    steps = min(max(failures, 1) - 1, 30)
    return min(limits.replenishment_retry_seconds_max,
               limits.replenishment_retry_seconds_min * 2 ** steps) * 1000


def _current(transaction, sku_id: str, request: str) -> dict | None:
    record = read(transaction, sku_id)
    if record is None or record["state"] != OPEN or record["request_id"] != request:
        return None
    return record


def record_unknown(transaction, sku_id: str, request: str, result: str,
                   latency_ms: int = -1) -> dict | None:
    """The attempt's outcome is not known (UNKNOWN or PENDING; with latency_ms >= 0, counted
    in the supplier's statistics), or its codes could not be imported yet (latency_ms -1): the
    same request id goes to the same supplier again after the backoff."""
    record = _current(transaction, sku_id, request)
    if record is None:
        return None
    record["failures"] += 1
    record.update(next_try_ms=transaction.now_ms + backoff_ms(record["failures"]),
                  last_result=result)
    if latency_ms >= 0:  # an answer that came (or did not) from the supplier
        routing.record_outcome(transaction, record["supplier_id"], sku_id, "UNKNOWN",
                               latency_ms)
    return _put(transaction, record)


def record_failure(transaction, sku_id: str, request: str, result: str,
                   latency_ms: int = 0) -> dict | None:
    """A definite failure ("FAILED" or "NOT_FOUND" from the supplier): the next attempt gets a
    new request id (and may go to another supplier) after the backoff."""
    record = _current(transaction, sku_id, request)
    if record is None:
        return None
    routing.record_outcome(transaction, record["supplier_id"], sku_id, result, latency_ms)
    events.emit(transaction, events.SUPPLIER_ATTEMPT_FAILED, sku=sku_id,
                supplier_id=record["supplier_id"], request_id=request, detail=result.lower())
    record["failures"] += 1
    record.update(request_id="", next_try_ms=transaction.now_ms + backoff_ms(record["failures"]),
                  last_result=result)
    return _put(transaction, record)


def deliver(transaction, sku_id: str, request: str, answer: dict,
            latency_ms: int = 0) -> dict | None:
    """The attempt succeeded: import its codes (answer: "codes", "batch_id",
    "unit_cost_micros", "currency", "valid_until_ms", the terms checked by the caller) and
    close the request, in this one commit. A code already stored (or malformed) is counted and
    left out, as any import does. Import refused as a whole (the batch id names another SKU's
    or other terms, or the file is full): nothing changes and the request stays open under
    the same request id. -> the request, or None when it is not this attempt's any more."""
    record = _current(transaction, sku_id, request)
    if record is None:
        return None
    status, statuses, _ = transaction.import_codes(
        sku_id.encode(), answer["batch_id"].encode(), record["supplier_id"].encode(),
        answer["unit_cost_micros"], 0, answer["valid_until_ms"],
        [code.encode() for code in answer["codes"]])
    if status != ImportStatus.OK:
        return record_unknown(transaction, sku_id, request, f"IMPORT_{status.name}")
    imported = statuses.count(ImportCodeStatus.IMPORTED)
    duplicates = statuses.count(ImportCodeStatus.DUPLICATE)
    routing.record_outcome(transaction, record["supplier_id"], sku_id, "SUCCEEDED", latency_ms,
                           answer["unit_cost_micros"] * len(statuses))
    record.update(state=CLOSED, closed_ms=transaction.now_ms, batch_id=answer["batch_id"],
                  unit_cost_micros=answer["unit_cost_micros"], currency=answer["currency"],
                  imported=imported, duplicates=duplicates,
                  rejected=len(statuses) - imported - duplicates, last_result="SUCCEEDED")
    return _put(transaction, record)


__all__ = ["after_reserve", "backoff_ms", "begin_attempt", "candidates", "check", "check_sku",
           "deliver", "open_requests", "read", "record_failure", "record_unknown", "wanted"]
