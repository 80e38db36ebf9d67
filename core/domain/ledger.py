"""The double-entry ledger: every money movement an order causes, written by the plan of the
transition that causes it (one commit), in integer micros of ONE currency per entry.

An entry is one balanced transaction: its postings (account, amount_micros) sum to zero, debits
positive, credits negative. An unbalanced entry is a programmer error: `post` asserts and the
commit it was in fails as a whole. Entries are never edited: a correction is a new entry naming
the one it corrects (`corrects`). Amounts in different currencies are never added: balances
are kept per (account, currency). Accounts are named `prefix:name` (docs/ledger.md lists them).

Tables (kamicore.engine.transaction.TABLES):
- `ledger`: entry id (u64 big-endian, from 1 without gaps) -> the entry's JSON;
- `ledger_meta`: b"next_id" -> the next entry id (u64 big-endian); b"balance" NUL currency
  NUL account -> the account's balance in micros (decimal); b"reference" NUL payment reference
  NUL entry id -> nothing (by_reference's index).

What each transition books is kamicore.domain.bookings; this module is the storage, the read
API (`entries`, `balances`, `by_reference`, `order_lines`) and the names.
"""

from __future__ import annotations

import json

from .. import limits

TABLE = "ledger"
META_TABLE = "ledger_meta"
NEXT_ID_KEY = b"next_id"
SEPARATOR = b"\0"
BALANCE_PREFIX = b"balance" + SEPARATOR
REFERENCE_PREFIX = b"reference" + SEPARATOR

UNASSIGNED = "unassigned"  # the supplier of codes imported without one
DEFAULT_PROVIDER = "default"  # the payment provider of a ConfirmPayment that names none

# kind -> what it records (docs/ledger.md says the same, with the postings)
KINDS = {
    "sale": "payment confirmed: the buyer's payment is receivable from the provider, earned "
            "as the channel's revenue",
    "cost": "codes delivered or a top-up done: their cost, payable to the supplier",
    "refund": "a sale's amount refunded: owed back to the buyer through the provider",
    "payment_refund": "a payment for an order that could not be sold any more (its hold "
                      "lapsed and its codes were sold to others, or it was cancelled): "
                      "received, owed back, never revenue",
    "void": "codes voided before their buyer saw them: their cost taken back from the "
            "supplier",
    "reissue": "a code reported invalid: its cost charged back to the supplier of its batch",
    "supplier_late": "a supplier's success after the order had been fulfilled elsewhere or "
                     "refunded: owed to the supplier, kept apart for reconciliation",
}

# the accounts' prefixes -> what they hold (debit balances positive)
ACCOUNTS = {
    "receivable": "per payment provider: payments confirmed, owed to the merchant",
    "revenue": "per channel: sales (a credit balance: negative)",
    "refunds": "per channel: sales refunded (contra-revenue, a debit balance)",
    "refunds_due": "per payment provider: refunds owed to buyers (a credit balance)",
    "cogs": "per supplier: cost of the codes and top-ups delivered",
    "payable": "per supplier: what the merchant owes the supplier (a credit balance)",
    "supplier_claims": "per supplier: cost of invalid codes charged back to the supplier",
    "late_costs": "per supplier: late supplier successes, owed but not sold (reconciliation)",
}

ENTRY_FIELDS = ("order_id", "sku", "channel", "supplier", "batch", "quantity",
                "payment_reference", "provider", "request_id", "corrects")
_DEFAULTS = {"quantity": 0, "corrects": 0}


def account(prefix: str, name: str) -> str:
    """`prefix:name`; an empty name is the UNASSIGNED one."""
    assert prefix in ACCOUNTS, prefix
    return f"{prefix}:{name or UNASSIGNED}"


def _id_key(entry_id: int) -> bytes:
    return entry_id.to_bytes(8, "big")


def _balance_key(account_name: str, currency: str) -> bytes:
    return BALANCE_PREFIX + currency.encode() + SEPARATOR + account_name.encode()


def post(transaction, kind: str, currency: str, postings: list[tuple[str, int]],
         **fields) -> int:
    """Write one balanced entry in this transaction -> its id (0: every amount was zero, and
    nothing is written). fields: ENTRY_FIELDS (the rest default to "" or 0)."""
    assert kind in KINDS, kind
    assert currency and set(fields) <= set(ENTRY_FIELDS), (currency, fields)
    assert all(type(amount) is int for _, amount in postings), postings
    assert sum(amount for _, amount in postings) == 0, f"unbalanced {kind}: {postings}"
    postings = [[name, amount] for name, amount in postings if amount]
    if not postings:
        return 0
    value = transaction.get(META_TABLE, NEXT_ID_KEY)
    entry_id = int.from_bytes(value, "big") if value is not None else 1
    transaction.put(META_TABLE, NEXT_ID_KEY, _id_key(entry_id + 1))
    entry = {"id": entry_id, "at_ms": transaction.now_ms, "kind": kind, "currency": currency,
             "postings": postings}
    for name in ENTRY_FIELDS:
        entry[name] = fields.get(name, _DEFAULTS.get(name, ""))
    transaction.put(TABLE, _id_key(entry_id), json.dumps(entry, sort_keys=True).encode())
    for name, amount in postings:
        key = _balance_key(name, currency)
        balance = transaction.get(META_TABLE, key)
        transaction.put(META_TABLE, key,
                        str((int(balance) if balance is not None else 0) + amount).encode())
    if entry["payment_reference"]:
        transaction.put(META_TABLE, REFERENCE_PREFIX + entry["payment_reference"].encode()
                        + SEPARATOR + _id_key(entry_id), b"")
    return entry_id


# -- reads: `view` is an engine (a snapshot, never waiting for the writer) or a transaction ----

def _scan(view, table: str, start: bytes, limit: int) -> list[tuple[bytes, bytes]]:
    return view.scan(table, start, limit)


def entry(view, entry_id: int) -> dict | None:
    value = view.get(TABLE, _id_key(entry_id))
    return json.loads(value) if value is not None else None


def entries(view, from_ms: int = 0, to_ms: int | None = None, after_id: int = 0,
            limit: int = limits.ledger_entries_per_page_default) -> list[dict]:
    """Up to `limit` entries with an id past `after_id` and from_ms <= at_ms < to_ms (None: no
    end), in id order. Page on with after_id = the last id returned."""
    assert 0 < limit <= limits.ledger_entries_per_page_max, limit
    found: list[dict] = []
    start = _id_key(after_id + 1)
    while len(found) < limit:
        page = _scan(view, TABLE, start, limits.ledger_entries_per_page_max)
        for _, value in page:
            item = json.loads(value)
            if item["at_ms"] >= from_ms and (to_ms is None or item["at_ms"] < to_ms):
                found.append(item)
                if len(found) >= limit:
                    break
        if len(page) < limits.ledger_entries_per_page_max:
            break
        start = _id_key(int.from_bytes(page[-1][0], "big") + 1)
    return found


def balances(view, currency: str | None = None) -> dict[tuple[str, str], int]:
    """(account, currency) -> balance in micros (debits positive), every account with a
    non-zero balance; of one currency only when `currency` is given."""
    prefix = BALANCE_PREFIX + (currency.encode() + SEPARATOR if currency else b"")
    result: dict[tuple[str, str], int] = {}
    start = prefix
    while True:
        page = _scan(view, META_TABLE, start, limits.ledger_entries_per_page_max)
        for key, value in page:
            if not key.startswith(prefix):
                return result
            money, _, name = bytes(key)[len(BALANCE_PREFIX):].partition(SEPARATOR)
            if int(value):
                result[(name.decode(), money.decode())] = int(value)
        if len(page) < limits.ledger_entries_per_page_max:
            return result
        start = bytes(page[-1][0]) + SEPARATOR


def by_reference(view, payment_reference: str) -> list[dict]:
    """The entries (sale, refund, payment_refund) naming a payment reference, in id order."""
    prefix = REFERENCE_PREFIX + payment_reference.encode() + SEPARATOR
    found = []
    start = prefix
    while True:
        page = _scan(view, META_TABLE, start, limits.ledger_entries_per_page_max)
        for key, _ in page:
            if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                return found
            found.append(entry(view, int.from_bytes(key[len(prefix):], "big")))
        if len(page) < limits.ledger_entries_per_page_max:
            return found
        start = bytes(page[-1][0]) + b"\0"


def order_lines(meta: dict) -> list[dict]:
    """An order's money per SKU: [{sku, quantity, currency, unit_price_micros, price_micros
    (the line's total at the channel's price at order time), cost_micros (what its delivered
    codes or its top-up cost; 0 until delivered), margin_micros, delivered}]. Lines naming
    the same SKU are one row. Orders made before prices were kept per SKU have one price
    per SKU derived from their total when they have a single SKU (else 0)."""
    quantities: dict[str, int] = {}
    for sku, quantity in meta["lines"]:
        quantities[sku] = quantities.get(sku, 0) + quantity
    prices = meta.get("prices")
    if prices is None:
        prices = ({sku: meta["total_micros"] // quantity for sku, quantity in quantities.items()}
                  if len(quantities) == 1 else {})
    costs = meta.get("costs", {})
    rows = []
    for sku, quantity in quantities.items():
        price = prices.get(sku, 0) * quantity
        cost = costs.get(sku, 0)
        rows.append({"sku": sku, "quantity": quantity, "currency": meta["currency"],
                     "unit_price_micros": prices.get(sku, 0), "price_micros": price,
                     "cost_micros": cost, "margin_micros": price - cost,
                     "delivered": sku in costs})
    return rows


__all__ = ["ACCOUNTS", "DEFAULT_PROVIDER", "KINDS", "UNASSIGNED", "account", "balances",
           "by_reference", "entries", "entry", "order_lines", "post"]
