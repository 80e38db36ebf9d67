"""Reconciliation of a payment provider's settlement file against the ledger's sales.

The file is CSV (UTF-8) with four columns: `payment_reference`, `amount`, `currency`, `time`.
A first row that names them is a header and may give them in any order (extra columns are
then ignored); without one the columns are in that order. `amount` is a decimal number of the
currency's major unit ("12.34"), converted exactly to micros (millionths: at most 6 decimals,
never through a float); `time` is ISO 8601 (a zone is required, e.g. "2026-12-01T10:00:00Z")
or unix milliseconds. Blank lines are skipped. A row that does not parse refuses the whole file
(InvalidArgument naming "csv line N"), and nothing is stored.

Each row is matched by its payment reference against the ledger (kamicore.domain.ledger.
by_reference: the receivable booked when the payment was confirmed) and gets one status:
- MATCHED: same currency and amount as booked;
- AMOUNT_MISMATCH: booked, but another amount or currency;
- MISSING_IN_KAMICORE: no payment booked under that reference;
- DUPLICATE_PAYMENT: a second row for a payment (or its order) already matched in the file.
Then every sale booked in the file's period (its earliest to its latest time) whose reference
the file lacks is a MISSING_IN_FILE line.

A run is stored with its lines; the same file again (by SHA-256 of its bytes) changes nothing
and answers the stored run. Tables (kamicore.engine.transaction.TABLES): `reconciliations`
(b"r" + run id u64 big-endian -> the run's summary; b"h" + sha256 -> run id; b"next" -> the
next run id) and `reconciliation_lines` (run id + line number u32, big-endian -> the line).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import hashlib
import io
import json

from .. import limits
from ..engine import InvalidArgument
from ..statuses import ReconcileSettlementStatus
from . import ledger

RUNS_TABLE = "reconciliations"
LINES_TABLE = "reconciliation_lines"
COLUMNS = ("payment_reference", "amount", "currency", "time")
MICROS = decimal.Decimal(1_000_000)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

MATCHED = "MATCHED"
AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
MISSING_IN_KAMICORE = "MISSING_IN_KAMICORE"
MISSING_IN_FILE = "MISSING_IN_FILE"
DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
STATUSES = (MATCHED, AMOUNT_MISMATCH, MISSING_IN_KAMICORE, MISSING_IN_FILE, DUPLICATE_PAYMENT)
_PAID = ("sale", "payment_refund")  # the entries that book a payment received


@dataclasses.dataclass(frozen=True)
class Row:
    line: int  # the row's line number in the file (1 = the first line)
    payment_reference: str
    amount_micros: int
    currency: str
    time_ms: int


def amount_micros(text: str, field: str) -> int:
    """"12.34" -> 12_340_000, exactly; InvalidArgument for anything else (a sign, an exponent,
    more than 6 decimals, a thousands separator)."""
    text = text.strip()
    digits = text.replace(".", "", 1)
    if not digits.isdigit() or not digits.isascii() or text.startswith("."):
        raise InvalidArgument(field, f"{text[:32]!r} is not an amount like 12.34")
    value = decimal.Decimal(text) * MICROS
    if value != value.to_integral_value():
        raise InvalidArgument(field, f"{text[:32]!r} has more than 6 decimals")
    return int(value)


def time_ms(text: str, field: str) -> int:
    text = text.strip()
    if text.isdigit():
        value = int(text)
    else:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgument(field, f"{text[:40]!r} is neither ISO 8601 nor unix ms") from None
        if moment.tzinfo is None:
            raise InvalidArgument(field, f"{text[:40]!r} names no time zone (add Z or +08:00)")
        value = (moment - EPOCH) // datetime.timedelta(milliseconds=1)  # exact, no float
    if not 0 < value < limits.time_ms_max:
        raise InvalidArgument(field, "is out of range")
    return value


def parse(data: bytes) -> list[Row]:
    """The file's rows (see the module docstring); InvalidArgument naming the line."""
    if len(data) > limits.settlement_file_bytes_max:
        raise InvalidArgument("csv", f"is over {limits.settlement_file_bytes_max} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgument("csv", "is not UTF-8") from None
    rows: list[Row] = []
    order = list(range(len(COLUMNS)))
    try:
        for number, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if not any(field.strip() for field in fields):
                continue
            names = [field.strip().lower() for field in fields]
            if not rows and set(COLUMNS) <= set(names):
                order = [names.index(name) for name in COLUMNS]
                continue
            where = f"csv line {number}"
            if len(fields) <= max(order):
                raise InvalidArgument(where, f"needs the columns {', '.join(COLUMNS)}")
            reference, amount, currency, moment = (fields[index].strip() for index in order)
            if not reference or len(reference.encode()) > limits.payment_reference_bytes_max:
                raise InvalidArgument(where, "payment_reference must be 1-"
                                      f"{limits.payment_reference_bytes_max} bytes")
            if len(currency) != limits.currency_bytes_max or not currency.isalpha() \
                    or not currency.isascii():
                raise InvalidArgument(where, "currency must be an ISO 4217 code like CNY")
            rows.append(Row(number, reference, amount_micros(amount, f"{where} amount"),
                            currency.upper(), time_ms(moment, f"{where} time")))
            if len(rows) > limits.settlement_rows_max:
                raise InvalidArgument("csv", f"has more than {limits.settlement_rows_max} rows")
    except csv.Error as error:
        raise InvalidArgument("csv", f"is not CSV: {error}") from None
    if not rows:
        raise InvalidArgument("csv", "holds no rows")
    return rows


def _booked(view, reference: str) -> tuple[str, str, int] | None:
    """The payment booked under a reference -> (order id, currency, micros received)."""
    paid = [entry for entry in ledger.by_reference(view, reference) if entry["kind"] in _PAID]
    if not paid:
        return None
    received = sum(amount for entry in paid for account, amount in entry["postings"]
                   if account.startswith("receivable:") and amount > 0)
    return paid[0]["order_id"], paid[0]["currency"], received


def _line(status, row: Row | None, order_id="", currency="", booked_micros=0,
          reference="", at_ms=0) -> dict:
    return {"status": status, "line": row.line if row else 0,
            "payment_reference": row.payment_reference if row else reference,
            "order_id": order_id, "currency": row.currency if row else currency,
            "file_amount_micros": row.amount_micros if row else 0,
            "booked_currency": currency, "booked_amount_micros": booked_micros,
            "time_ms": row.time_ms if row else at_ms}


def match(view, rows: list[Row]) -> tuple[list[dict], int, int] | None:
    """-> (lines, period from ms, period to ms exclusive) as the snapshot `view` sees the
    ledger; None when the file's period holds more than settlement_entries_scanned_max
    entries."""
    lines, seen_orders, seen_references = [], set(), set()
    for row in rows:
        booked = _booked(view, row.payment_reference)
        if booked is None:
            lines.append(_line(MISSING_IN_KAMICORE, row))
            continue
        order_id, currency, micros = booked
        if order_id in seen_orders:
            status = DUPLICATE_PAYMENT
        elif (currency, micros) == (row.currency, row.amount_micros):
            status = MATCHED
        else:
            status = AMOUNT_MISMATCH
        seen_orders.add(order_id)
        seen_references.add(row.payment_reference)
        lines.append(_line(status, row, order_id, currency, micros))
    from_ms, to_ms = min(row.time_ms for row in rows), max(row.time_ms for row in rows) + 1
    after, scanned = 0, 0
    while True:
        page = ledger.entries(view, from_ms, to_ms, after, limits.ledger_entries_per_page_max)
        scanned += len(page)
        if scanned > limits.settlement_entries_scanned_max:
            return None
        for entry in page:
            if entry["kind"] == "sale" and entry["payment_reference"] not in seen_references:
                seen_references.add(entry["payment_reference"])
                received = sum(amount for account, amount in entry["postings"]
                               if account.startswith("receivable:") and amount > 0)
                lines.append(_line(MISSING_IN_FILE, None, entry["order_id"], entry["currency"],
                                   received, entry["payment_reference"], entry["at_ms"]))
        if len(page) < limits.ledger_entries_per_page_max:
            return lines, from_ms, to_ms
        after = page[-1]["id"]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run_key(run_id: int) -> bytes:
    return b"r" + run_id.to_bytes(8, "big")


def _line_key(run_id: int, number: int) -> bytes:
    return run_id.to_bytes(8, "big") + number.to_bytes(4, "big")


def stored_run(view, sha256: str) -> dict | None:
    value = view.get(RUNS_TABLE, b"h" + bytes.fromhex(sha256))
    return run(view, int.from_bytes(value, "big")) if value is not None else None


def store(transaction, sha256: str, provider: str, file_bytes: int, lines: list[dict],
          from_ms: int, to_ms: int) -> tuple[dict, bool]:
    """A plan: the run and its lines -> (the run, whether it is new); the stored run when
    this file was reconciled before (nothing written)."""
    existing = stored_run(transaction, sha256)
    if existing is not None:
        return existing, False
    value = transaction.get(RUNS_TABLE, b"next")
    run_id = int.from_bytes(value, "big") if value is not None else 1
    transaction.put(RUNS_TABLE, b"next", (run_id + 1).to_bytes(8, "big"))
    counts = dict.fromkeys(STATUSES, 0)
    for number, line in enumerate(lines, start=1):
        counts[line["status"]] += 1
        transaction.put(LINES_TABLE, _line_key(run_id, number),
                        json.dumps(line, sort_keys=True).encode())
    summary = {"run_id": run_id, "sha256": sha256, "provider": provider,
               "created_ms": transaction.now_ms, "actor": transaction.actor.decode(),
               "file_bytes": file_bytes, "from_ms": from_ms, "to_ms": to_ms,
               "lines": len(lines), "counts": counts}
    transaction.put(RUNS_TABLE, _run_key(run_id), json.dumps(summary, sort_keys=True).encode())
    transaction.put(RUNS_TABLE, b"h" + bytes.fromhex(sha256), run_id.to_bytes(8, "big"))
    return summary, True


def run(view, run_id: int) -> dict | None:
    value = view.get(RUNS_TABLE, _run_key(run_id))
    return json.loads(value) if value is not None else None


def runs(view, after_id: int, limit: int) -> list[dict]:
    """Runs with ids above `after_id`, in id order, at most `limit`."""
    if after_id >= 2**64 - 1:
        return []
    found = view.scan(RUNS_TABLE, _run_key(after_id + 1), limit)
    return [json.loads(value) for key, value in found if bytes(key[:1]) == b"r"]


def lines(view, run_id: int, after_line: int, limit: int) -> list[dict]:
    """A run's lines after number `after_line`, at most `limit`; each with its `number`."""
    if after_line >= 2**32 - 1:
        return []
    found = view.scan(LINES_TABLE, _line_key(run_id, after_line + 1), limit)
    result = []
    for key, value in found:
        if int.from_bytes(key[:8], "big") != run_id:
            break
        result.append({"number": int.from_bytes(key[8:], "big"), **json.loads(value)})
    return result


async def reconcile(engine, data: bytes, provider: str, actor: str
                    ) -> tuple[ReconcileSettlementStatus, dict | None]:
    """Reconcile one file -> (status, the run). InvalidArgument for a file that does not
    parse, or a provider name that is too long."""
    provider = provider or ledger.DEFAULT_PROVIDER
    if len(provider.encode()) > limits.payment_provider_bytes_max:
        raise InvalidArgument("provider", f"is over {limits.payment_provider_bytes_max} bytes")
    sha256 = digest(data)
    existing = stored_run(engine, sha256)
    if existing is not None:
        return ReconcileSettlementStatus.ALREADY_RECONCILED, existing
    rows = parse(data)
    matched = match(engine, rows)
    if matched is None:
        return ReconcileSettlementStatus.PERIOD_TOO_LARGE, None
    found, from_ms, to_ms = matched
    stored, new = await engine.run_async(engine.plan(
        store, (sha256, provider, len(data), found, from_ms, to_ms), actor,
        full=lambda: (None, False)))
    if stored is None:
        return ReconcileSettlementStatus.STORAGE_FULL, None
    return (ReconcileSettlementStatus.RECONCILED if new
            else ReconcileSettlementStatus.ALREADY_RECONCILED), stored


__all__ = ["COLUMNS", "STATUSES", "Row", "amount_micros", "lines", "match", "parse",
           "reconcile", "run", "runs", "stored_run"]
