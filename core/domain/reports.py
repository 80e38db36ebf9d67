"""Operators' reports, read from one snapshot (never the writer) in bounded steps.

A period report reads at most limits.report_records_scanned_max source records (ledger
entries, orders, outbox entries) from its cursor and answers (rows, next cursor): its rows are
sums over what it read, and rows with the same key from successive calls add up (`merge`).
The stock reports step through SKUs and their batches the same way. Money stays per currency:
every row names one, and amounts of different currencies are never added.
"""

from __future__ import annotations

import datetime
import json

from .. import limits
from ..engine import InvalidArgument
from ..statuses import CodeState
from . import catalog, events, ledger, topups

DAY_MS = 86_400_000
META_TABLE = "order_meta"


def day(at_ms: int) -> str:
    """The UTC day of a unix ms, YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC).strftime("%Y-%m-%d")


def period(from_ms: int, to_ms: int, now_ms: int) -> tuple[int, int]:
    """A request's period; to_ms 0 is now."""
    for value, field in ((from_ms, "period.from_ms"), (to_ms, "period.to_ms")):
        if not 0 <= value < limits.time_ms_max:
            raise InvalidArgument(field, "is out of range")
    to_ms = to_ms or now_ms + 1
    if to_ms <= from_ms:
        raise InvalidArgument("period.to_ms", "must be after from_ms")
    return from_ms, to_ms


def _number_cursor(cursor: str, field: str = "cursor") -> int:
    if cursor and not (cursor.isdigit() and cursor.isascii() and len(cursor) < 20):
        raise InvalidArgument(field, "is not a cursor this report gave")
    return int(cursor or 0)


def _add(rows: dict, key: tuple, **amounts: int) -> None:
    row = rows.setdefault(key, dict.fromkeys(amounts, 0))
    for name, amount in amounts.items():
        row[name] += amount


def merge(pages: list[list[dict]], key: tuple[str, ...]) -> list[dict]:
    """Rows of successive pages of one report, those with the same key added up, in key
    order (what `kamicore report` prints)."""
    merged: dict[tuple, dict] = {}
    for page in pages:
        for row in page:
            name = tuple(row[field] for field in key)
            if name not in merged:
                merged[name] = dict(row)
                continue
            for field, value in row.items():
                if field not in key and isinstance(value, int):
                    merged[name][field] += value
    return [merged[name] for name in sorted(merged)]


def _each_entry(view, from_ms: int, to_ms: int, cursor: str, rows, add) -> str:
    """`add(entry)` for each ledger entry of the period from the cursor, up to
    report_records_scanned_max entries, or fewer once `rows()` rows could not take one more
    entry's (an order's lines, twice) -> the cursor to continue from ("" when done)."""
    after = _number_cursor(cursor)
    found = ledger.entries(view, from_ms, to_ms, after, limits.report_records_scanned_max)
    room = limits.report_rows_per_reply_max - 2 * limits.lines_per_order_max
    for entry in found:
        add(entry)
        if rows() > room:
            return str(entry["id"])
    return "" if len(found) < limits.report_records_scanned_max else str(found[-1]["id"])


# -- sales ------------------------------------------------------------------------------------

def sales(view, from_ms: int, to_ms: int, cursor: str = "") -> tuple[list[dict], str]:
    """Sales by day x SKU x channel x currency: {day, sku_id, channel, currency, orders,
    quantity, price_micros, cost_micros, margin_micros} from the sale entries of the period
    (each order's lines: ledger.order_lines of its meta, as it is now)."""
    rows: dict[tuple, dict] = {}

    def add(entry: dict) -> None:
        if entry["kind"] != "sale" or not entry["order_id"]:
            return
        value = view.get(META_TABLE, entry["order_id"].encode())
        if value is None:
            return
        meta = json.loads(value)
        for line in ledger.order_lines(meta):
            _add(rows, (day(entry["at_ms"]), line["sku"], meta["channel"], line["currency"]),
                 orders=1, quantity=line["quantity"], price_micros=line["price_micros"],
                 cost_micros=line["cost_micros"], margin_micros=line["margin_micros"])

    next_cursor = _each_entry(view, from_ms, to_ms, cursor, rows.__len__, add)
    return [dict(zip(("day", "sku_id", "channel", "currency"), key, strict=True), **row)
            for key, row in sorted(rows.items())], next_cursor


# -- supplier statements ----------------------------------------------------------------------

_STATEMENT = ("units", "cost_micros", "voided_micros", "late_micros", "owed_micros",
              "claims_micros")


def _statement_amounts(entry: dict, supplier: str) -> dict[str, int]:
    """What one ledger entry adds to a supplier's statement."""
    amounts = dict.fromkeys(_STATEMENT, 0)
    for account, amount in entry["postings"]:
        prefix, _, name = account.partition(":")
        if name != supplier:
            continue
        if prefix == "payable":
            amounts["owed_micros"] -= amount  # a credit: owed to the supplier
        elif prefix == "supplier_claims":
            amounts["claims_micros"] += amount
        elif prefix == "cogs" and entry["kind"] == "cost":
            amounts["cost_micros"] += amount
        elif prefix == "cogs" and entry["kind"] == "void":
            amounts["voided_micros"] -= amount
        elif prefix == "late_costs":
            amounts["late_micros"] += amount
    if entry["kind"] == "cost":
        amounts["units"] = entry["quantity"] or 1
    return amounts


def _suppliers_of(entry: dict) -> set[str]:
    return {account.partition(":")[2] for account, _ in entry["postings"]
            if account.partition(":")[0] in ("payable", "cogs", "supplier_claims",
                                             "late_costs")}


def supplier_statement(view, from_ms: int, to_ms: int, supplier_id: str = "",
                       cursor: str = "") -> tuple[list[dict], list[dict], str]:
    """-> (rows {supplier_id, currency, units, cost_micros, voided_micros, late_micros,
    owed_micros, claims_micros}, flagged attempts, cursor). Flagged: the late successes booked
    in the period (supplier_late entries) and, on the first page, the attempts created in the
    period whose outcome is not known yet."""
    rows: dict[tuple, dict] = {}
    flagged = [] if cursor else unsettled_attempts(view, from_ms, to_ms, supplier_id)

    def add(entry: dict) -> None:
        for supplier in sorted(_suppliers_of(entry)):
            if not supplier_id or supplier == supplier_id:
                _add(rows, (supplier, entry["currency"]), **_statement_amounts(entry, supplier))
        if entry["kind"] == "supplier_late" and supplier_id in ("", entry["supplier"]):
            flagged.append({"supplier_id": entry["supplier"], "request_id": entry["request_id"],
                            "order_id": entry["order_id"], "sku_id": entry["sku"],
                            "currency": entry["currency"], "reason": "late",
                            "cost_micros": _statement_amounts(entry, entry["supplier"])[
                                "late_micros"], "created_ms": entry["at_ms"]})

    next_cursor = _each_entry(view, from_ms, to_ms, cursor, lambda: len(rows) + len(flagged),
                              add)
    return ([dict(supplier_id=key[0], currency=key[1], **row)
             for key, row in sorted(rows.items())], flagged, next_cursor)


def unsettled_attempts(view, from_ms: int, to_ms: int, supplier_id: str = "") -> list[dict]:
    """Supplier attempts created in the period whose outcome is not known yet, from the index
    of unsettled attempts (at most report_records_scanned_max of them are read)."""
    found = []
    for key, _ in view.scan(topups.UNSETTLED_TABLE, b"", limits.report_records_scanned_max):
        attempt = topups.get(view, bytes(key[8:]).decode())
        if attempt is None or not from_ms <= attempt["created_ms"] < to_ms or \
                supplier_id and attempt["supplier_id"] != supplier_id:
            continue
        found.append({name: attempt[name] for name in (
            "supplier_id", "request_id", "order_id", "sku_id", "currency", "cost_micros",
            "created_ms")} | {"reason": "unsettled"})
    return found


# -- stock ------------------------------------------------------------------------------------

def _sku_cursor(cursor: str) -> tuple[int, int]:
    first, _, second = cursor.partition(".")
    return _number_cursor(first), _number_cursor(second)


def _batches(engine, cursor: str, keep) -> tuple[list[dict], str]:
    """Batch rows `keep(batch, row)` accepts, SKU by SKU from the cursor ("sku index.batch
    index"), until report_rows_per_reply_max rows or report_records_scanned_max batches."""
    sku_index, batch_index = _sku_cursor(cursor)
    skus = engine.skus()
    rows, read = [], 0
    for index in range(sku_index, len(skus)):
        sku_id = skus[index]
        sku = catalog.read(engine, sku_id)
        currency = sku.currency if sku is not None else ""
        batches = engine.batch_stock(sku_id)
        for position in range(batch_index, len(batches)):
            if len(rows) >= limits.report_rows_per_reply_max \
                    or read >= limits.report_records_scanned_max:
                return rows, f"{index}.{position}"
            read += 1
            batch = batches[position]
            available = batch.counts.get(CodeState.AVAILABLE, 0)
            row = {"sku_id": sku_id, "batch_id": batch.batch, "supplier_id": batch.supplier,
                   "currency": currency, "available": available, "sellable": batch.sellable,
                   "unit_cost_micros": batch.unit_cost_micros,
                   "value_micros": available * batch.unit_cost_micros,
                   "valid_until_ms": batch.valid_until_ms}
            if keep(batch, row):
                rows.append(row)
        batch_index = 0
    return rows, ""


def stock_valuation(engine, cursor: str = "") -> tuple[list[dict], str]:
    """Batches with available codes: available x unit cost, per SKU and batch."""
    return _batches(engine, cursor, lambda batch, row: row["available"] > 0)


def stock_expiring(engine, within_days: int, cursor: str = "") -> tuple[list[dict], str]:
    """Batches whose sellable codes expire before now + within_days days."""
    if not 1 <= within_days <= limits.report_expiring_days_max:
        raise InvalidArgument("within_days", f"must be 1-{limits.report_expiring_days_max}")
    end = engine.now_ms() + within_days * DAY_MS
    return _batches(engine, cursor,
                    lambda batch, row: batch.sellable > 0 and batch.valid_until_ms < end)


# -- redemptions and risk ---------------------------------------------------------------------

def redemptions(engine, from_ms: int, to_ms: int, cursor: str = "") -> tuple[list[dict], str]:
    """Codes redeemed and frozen as leaked per terminal and SKU, from the outbox's events
    (report_records_scanned_max outbox entries a call)."""
    after = _number_cursor(cursor)
    rows: dict[tuple, dict] = {}
    read = 0
    while read < limits.report_records_scanned_max:
        found, next_id = events.read(engine, after, limits.events_per_page_max)
        read += limits.events_per_page_max
        for event in found:
            if from_ms <= event.at_ms < to_ms and event.type in (events.CODE_REDEEMED,
                                                                 events.CODE_FROZEN):
                redeemed = event.type == events.CODE_REDEEMED
                _add(rows, (event.terminal, event.sku), redeemed=int(redeemed),
                     frozen=int(not redeemed))
        if next_id == after:
            return _terminal_rows(rows), ""
        after = next_id
    return _terminal_rows(rows), str(after)


def _terminal_rows(rows: dict) -> list[dict]:
    return [{"terminal": key[0], "sku_id": key[1], **row} for key, row in sorted(rows.items())]


def risk_decisions(engine, from_ms: int, to_ms: int, cursor: str = "") -> tuple[list[dict], str]:
    """Orders created in the period and scored: per decision (rule "") and per rule that
    fired x the order's decision. The cursor is the last order id read, hex."""
    try:
        start = bytes.fromhex(cursor) + b"\0" if cursor else b""
    except ValueError:
        raise InvalidArgument("cursor", "is not a cursor this report gave") from None
    found = engine.scan(META_TABLE, start, limits.report_records_scanned_max)
    rows: dict[tuple, dict] = {}
    for _, value in found:
        meta = json.loads(value)
        risk = meta.get("risk")
        if not risk or not from_ms <= meta.get("created_ms", 0) < to_ms:
            continue
        _add(rows, ("", risk["decision"]), orders=1)
        for rule in risk["fired"]:
            _add(rows, (rule["name"], risk["decision"]), orders=1)
    done = len(found) < limits.report_records_scanned_max
    return ([{"rule": key[0], "decision": key[1], **row} for key, row in sorted(rows.items())],
            "" if done else bytes(found[-1][0]).hex())


__all__ = ["day", "merge", "period", "redemptions", "risk_decisions",
           "sales", "stock_expiring", "stock_valuation", "supplier_statement", "unsettled_attempts"]
