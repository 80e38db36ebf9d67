"""`kamicore ledger balances|entries`: the books of a local data dir (docs/ledger.md)."""

from __future__ import annotations

import json

from .. import limits
from ..domain import ledger
from ..engine import Engine
from ..engine.validate import integer, text
from .data import parse_time_ms


def add_commands(commands) -> None:
    books = commands.add_parser("ledger", help="the double-entry books (docs/ledger.md)")
    actions = books.add_subparsers(dest="ledger_command", required=True)
    balances = actions.add_parser("balances", help="every account's balance per currency, "
                                  "as JSON lines (debits positive)")
    balances.add_argument("--currency", help="only this currency (ISO 4217)")
    balances.set_defaults(run=command_balances)
    entries = actions.add_parser("entries", help="entries in id order, as JSON lines")
    entries.add_argument("--from", dest="from_time", help="from this time on (ISO 8601 or "
                         "unix ms)")
    entries.add_argument("--to", dest="to_time", help="before this time")
    entries.add_argument("--after-id", type=int, default=0, help="entries past this id")
    entries.add_argument("--limit", type=int, default=limits.ledger_entries_per_page_default,
                         help=f"at most this many (1-{limits.ledger_entries_per_page_max})")
    entries.add_argument("--reference", help="only the entries of this payment reference")
    entries.set_defaults(run=command_entries)


def command_balances(engine: Engine, args) -> int:
    if args.currency is not None:
        text(args.currency, "--currency", 3)
    for (name, currency), amount in sorted(ledger.balances(engine, args.currency).items(),
                                           key=lambda item: (item[0][1], item[0][0])):
        print(json.dumps({"account": name, "currency": currency, "balance_micros": amount}))
    return 0


def command_entries(engine: Engine, args) -> int:
    if args.reference is not None:
        text(args.reference, "--reference", limits.payment_reference_bytes_max)
        found = ledger.by_reference(engine, args.reference)
    else:
        integer(args.after_id, "--after-id", 0, 2**63 - 1)
        integer(args.limit, "--limit", 1, limits.ledger_entries_per_page_max)
        found = ledger.entries(engine, parse_time_ms(args.from_time, "--from") or 0,
                               parse_time_ms(args.to_time, "--to"), args.after_id, args.limit)
    for item in found:
        print(json.dumps(item, sort_keys=True))
    return 0
