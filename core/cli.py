"""`kamicore` command line: operator tools over a data dir (import, stock, orders, audit)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .engine import Engine, InvalidArgument, codes_per_import_max
from .statuses import ImportBatchStatus, ImportStatus

DATA_DIR_DEFAULT = "var"
DATA_DIR_ENV = "KAMICORE_DATA_DIR"
import_chunk_codes = 10_000  # codes per engine call while importing a file
assert import_chunk_codes <= codes_per_import_max


def parse_time_ms(text: str | None, field: str) -> int | None:
    """ISO 8601 (2027-01-31 or 2027-01-31T12:00:00+08:00) or unix milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, "must be ISO 8601 or unix milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def read_codes(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, code) from a file with one code per line, or a CSV whose first column is
    the code (a header row naming `code` is skipped). Blank lines are skipped."""
    with open(path, newline="", encoding="utf-8") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        first_line = sample.splitlines()[0] if sample else ""
        is_csv = path.suffix.lower() == ".csv" or "," in first_line
        if is_csv:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row or not row[0].strip():
                    continue
                if number == 1 and row[0].strip().lower() == "code":
                    continue
                yield number, row[0].strip()
        else:
            for number, line in enumerate(handle, start=1):
                code = line.rstrip("\r\n")
                if code.strip():
                    yield number, code


def chunks(rows: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def command_import(engine: Engine, args) -> int:
    path = Path(args.file)
    total_bytes = path.stat().st_size
    imported = duplicates = 0
    rejected: list[tuple[int, str]] = []
    progress = _progress(total_bytes, f"importing {path.name}", args.quiet)
    done_bytes = 0
    with progress:
        for chunk in chunks(read_codes(path), import_chunk_codes):
            result = engine.import_codes(
                args.sku, args.batch, [code for _, code in chunk], supplier=args.supplier,
                unit_cost_micros=args.unit_cost_micros,
                valid_from_ms=parse_time_ms(args.valid_from, "--valid-from") or 0,
                valid_until_ms=parse_time_ms(args.valid_until, "--valid-until"),
                actor="cli:import")
            if result.status != ImportBatchStatus.OK:
                print(f"error: batch {args.batch}: {result.status.name}", file=sys.stderr)
                return 1
            imported += result.imported
            duplicates += result.duplicates
            rejected.extend((chunk[row][0], status.name) for row, status in result.rejected)
            done_bytes += sum(len(code.encode()) + 1 for _, code in chunk)
            progress.update(min(done_bytes, total_bytes))
    summary = {"imported": imported, "duplicates": duplicates, "rejected": len(rejected)}
    print(json.dumps(summary))
    for line, reason in rejected[:100]:
        print(f"line {line}: {reason}", file=sys.stderr)
    if len(rejected) > 100:
        print(f"... and {len(rejected) - 100} more rejected lines", file=sys.stderr)
    return 0


class _progress:
    """A rich progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, quiet: bool):
        self._bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import Progress
            self._bar = Progress(transient=True)
            self._task = self._bar.add_task(label, total=total)

    def __enter__(self):
        if self._bar:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self._bar:
            self._bar.__exit__(*exc)

    def update(self, completed: int) -> None:
        if self._bar:
            self._bar.update(self._task, completed=completed)


def command_stock(engine: Engine, args) -> int:
    skus = [args.sku] if args.sku else engine.skus()
    report = {}
    for sku in skus:
        stock = engine.stock(sku)
        if stock is None:
            print(f"error: sku {sku!r} not found", file=sys.stderr)
            return 1
        report[sku] = {"counts": {state.name: count for state, count in stock.counts.items()},
                       "sellable": stock.sellable, "expired_available": stock.expired_available,
                       "soonest_valid_until_ms": stock.soonest_valid_until_ms}
    print(json.dumps(report, indent=2))
    return 0


def command_order_show(engine: Engine, args) -> int:
    order = engine.order(args.order_id)  # masked: the CLI never prints plaintext codes
    if order is None:
        print(f"error: order {args.order_id!r} not found", file=sys.stderr)
        return 1
    print(json.dumps({
        "order_id": order.order_id, "state": order.state, "hold_until_ms": order.hold_until_ms,
        "lines": order.lines,
        "codes": [{"code_id": code.code_id, "state": code.state.name, "code": code.masked,
                   "sku": code.sku} for code in order.codes]}, indent=2))
    return 0


def command_audit_verify(engine: Engine, args) -> int:
    report = engine.verify_audit()
    print(json.dumps({"ok": report.ok, "blocks": report.blocks, "events": report.events,
                      "head": report.head.hex(), "problem": report.problem}))
    return 0 if report.ok else 1


def command_check(engine: Engine, args) -> int:
    problems = engine.check()
    for problem in problems:
        print(problem)
    print(json.dumps({"ok": not problems, "problems": len(problems)}))
    return 0 if not problems else 1


def command_rotate_keys(engine: Engine, args) -> int:
    batches = engine.rotate_keys(actor="cli:rotate-keys")
    print(json.dumps({"rewrapped_batches": batches}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kamicore", description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV, DATA_DIR_DEFAULT),
                        help=f"LMDB data dir (default ${DATA_DIR_ENV} or ./{DATA_DIR_DEFAULT})")
    commands = parser.add_subparsers(dest="command", required=True)

    importing = commands.add_parser("import", help="import codes from a file (one per line, "
                                    "or CSV with the code first); re-running skips duplicates")
    importing.add_argument("file")
    importing.add_argument("--sku", required=True)
    importing.add_argument("--batch", required=True)
    importing.add_argument("--supplier", default="")
    importing.add_argument("--unit-cost-micros", type=int, default=0)
    importing.add_argument("--valid-from", help="ISO 8601 or unix ms")
    importing.add_argument("--valid-until", help="ISO 8601 or unix ms (default: never)")
    importing.add_argument("--quiet", action="store_true", help="no progress bar")
    importing.set_defaults(run=command_import)

    stock = commands.add_parser("stock", help="counts by state for one or every sku")
    stock.add_argument("sku", nargs="?")
    stock.set_defaults(run=command_stock)

    order = commands.add_parser("order", help="orders")
    order_commands = order.add_subparsers(dest="order_command", required=True)
    show = order_commands.add_parser("show", help="an order with its codes masked")
    show.add_argument("order_id")
    show.set_defaults(run=command_order_show)

    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="recompute the audit hash chain")
    verify.set_defaults(run=command_audit_verify)

    check = commands.add_parser("check", help="verify every stored invariant (counters, "
                                "indexes, orders, decryption, audit chain)")
    check.set_defaults(run=command_check)

    rotate = commands.add_parser("rotate-keys", help="re-wrap data keys under a new master key")
    rotate.set_defaults(run=command_rotate_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with Engine(args.data_dir) as engine:
            return args.run(engine, args)
    except InvalidArgument as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
