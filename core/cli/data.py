"""Operator commands over a data dir: import, stock, orders, audit, check, keys rotation,
backup and restore."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
from datetime import datetime, UTC
from pathlib import Path
from collections.abc import Iterator

from .. import limits
from ..domain import imports
from ..domain.catalog import Catalog
from ..engine import AsyncEngine, Engine, InvalidArgument
from ..grpc.wire import field_names
from ..statuses import ImportStatus, UnlockTerminalStatus, wire_name

# the engine's names of the batch terms -> the options that set them
IMPORT_OPTIONS = {"sku": "--sku", "sku_id": "--sku", "batch": "--batch",
                  "supplier": "--supplier", "unit_cost_micros": "--unit-cost-micros",
                  "valid_from_ms": "--valid-from", "valid_until_ms": "--valid-until"}


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
        moment = moment.replace(tzinfo=UTC)
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


def first_line_not_utf8(path: Path) -> int | None:
    """The number of the first line that is not UTF-8 (checked before anything is imported);
    a line break byte never occurs inside a UTF-8 sequence."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return None


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
    """The API's rules and its import stream (kamicore.domain.imports): the SKU must be in the
    catalog, then the file's codes commit in order in bounded groups, so a file of any length
    holds one group in memory and a re-run counts what landed as duplicates."""
    path = Path(args.file)
    bad_line = first_line_not_utf8(path)  # also: the file must be there and readable
    if bad_line is not None:
        print(f"error: {path}: line {bad_line} is not UTF-8 text; nothing was imported",
              file=sys.stderr)
        return 1
    terms = {"supplier": args.supplier, "unit_cost_micros": args.unit_cost_micros,
             "valid_from_ms": parse_time_ms(args.valid_from, "--valid-from") or 0,
             "valid_until_ms": parse_time_ms(args.valid_until, "--valid-until")}
    with field_names(IMPORT_OPTIONS):
        engine.check_import_terms(args.sku, args.batch, **terms)
        refused = imports.refusal(Catalog(engine), args.sku)
    if refused is not None:
        print(f"error: --sku {args.sku}: {wire_name(refused)} (create it first: kamicore sku "
              "create)", file=sys.stderr)
        return 1
    with field_names(IMPORT_OPTIONS):
        progress, rejected = asyncio.run(_import_file(engine, path, args, terms))
    print(json.dumps({"imported": progress.imported, "duplicates": progress.duplicates,
                      "rejected": progress.rejected}))
    for line, reason in rejected:
        print(f"line {line}: {reason}", file=sys.stderr)
    if progress.rejected > len(rejected):
        print(f"... and {progress.rejected - len(rejected)} more rejected lines",
              file=sys.stderr)
    if progress.status != ImportStatus.OK:
        print(f"error: batch {args.batch}: {wire_name(progress.status)}: the file's first "
              f"{progress.rows_processed} codes were settled and none after them (a re-run "
              "skips what landed)", file=sys.stderr)
        return 1
    return 0


async def _import_file(engine: Engine, path: Path, args, terms: dict):
    """The file through an ImportStream -> (its progress, (line, why) of the first rejected
    rows). Rows are codes in stream order; `lines` keeps the file line of each row not yet
    settled, so memory stays one group's worth."""
    stream = imports.ImportStream(AsyncEngine(engine), args.sku, args.batch, terms,
                                  "cli:import")
    lines: list[int] = []  # the file line of each row from `first_row` on
    first_row = 0
    rejected: list[tuple[int, str]] = []
    total_bytes = path.stat().st_size
    done_bytes = 0

    def settle() -> None:
        nonlocal first_row
        listed = stream.progress.rejected_rows[:limits.cli_rejected_lines_listed_max]
        for row, status in listed[len(rejected):]:
            rejected.append((lines[row - first_row], status.name))
        settled = stream.progress.rows_processed
        del lines[:settled - first_row]
        first_row = settled

    with _progress(total_bytes, f"importing {path.name}", args.quiet) as progress:
        for chunk in chunks(read_codes(path), limits.codes_per_chunk_max):
            lines.extend(number for number, _ in chunk)
            added = await stream.add([code for _, code in chunk])
            settle()
            if not added:
                return stream.progress, rejected
            done_bytes += sum(len(code.encode()) + 1 for _, code in chunk)
            progress.update(min(done_bytes, total_bytes))
        await stream.finish()
        settle()
    return stream.progress, rejected


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


def _terminal_json(terminal: str, state) -> dict:
    return {"terminal": terminal, "misses": state.misses, "locked": state.locked,
            "locked_until_ms": state.locked_until_ms}


def command_terminal_show(engine: Engine, args) -> int:
    print(json.dumps(_terminal_json(args.terminal, engine.terminal_state(args.terminal))))
    return 0


def command_terminal_unlock(engine: Engine, args) -> int:
    """The same write as the UnlockTerminal RPC, on the data dir (the server may be running:
    its workers read the terminal's record from the same file)."""
    result = engine.unlock_terminal(args.terminal, actor="cli")
    if result.status == UnlockTerminalStatus.STORAGE_FULL:
        print("error: the data file is full; nothing changed", file=sys.stderr)
        return 1
    report = _terminal_json(args.terminal, result.before)
    print(json.dumps({"status": wire_name(result.status), "before": report}))
    return 0


def command_order_show(engine: Engine, args) -> int:
    order = engine.order(args.order_id)  # masked: the CLI never prints plaintext codes
    if order is None:
        print(f"error: order {args.order_id!r} not found", file=sys.stderr)
        return 1
    # states by the API's names (ORDER_STATE_PAID, CODE_STATE_SOLD), as `call` prints them
    print(json.dumps({
        "order_id": order.order_id, "state": wire_name(order.state),
        "hold_until_ms": order.hold_until_ms, "lines": order.lines,
        "codes": [{"code_id": code.code_id, "state": wire_name(code.state),
                   "code": code.masked, "sku": code.sku} for code in order.codes]}, indent=2))
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
    if batches is None:
        print("error: the data file is full; every key stays as it was", file=sys.stderr)
        return 1
    print(json.dumps({"rewrapped_batches": batches}))
    return 0


def command_backup(engine: Engine, args) -> int:
    destination = Path(args.destination)
    destination.mkdir(parents=True, exist_ok=True)
    if (destination / "data.mdb").exists():
        print(f"error: {destination} already holds a data.mdb", file=sys.stderr)
        return 1
    # a consistent snapshot from one read transaction; writers carry on meanwhile
    engine.backup(destination)
    print(json.dumps({"backup": str(destination / "data.mdb"),
                      "bytes": (destination / "data.mdb").stat().st_size,
                      "note": "the master key is not in the backup; keep it apart"}))
    return 0


def command_restore(args) -> int:
    import shutil

    from ..runtime.startup import DataDirLock, master_key_path, open_engine
    source = Path(args.source)
    source_file = source / "data.mdb" if source.is_dir() else source
    target = Path(args.settings.data_dir)
    if not source_file.exists():
        print(f"error: no data.mdb at {source}", file=sys.stderr)
        return 1
    if (target / "data.mdb").exists() and not args.force:
        print(f"error: {target} already has data; stop the server and pass --force",
              file=sys.stderr)
        return 1
    key_path = master_key_path(args.settings)
    if key_path is not None and not key_path.exists():
        from ..keyring import MASTER_KEY_ENV
        print(f"error: the backup's codes open only with its master key: put it in "
              f"{key_path} (mode 0600) or set {MASTER_KEY_ENV} first", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    with DataDirLock(target):  # refused while a server serves the dir
        shutil.copyfile(source_file, target / "data.mdb.restoring")
        os.replace(target / "data.mdb.restoring", target / "data.mdb")
        (target / "lock.mdb").unlink(missing_ok=True)
        # opens with the master key; fails loudly if it is the wrong one
        engine, _ = open_engine(args.settings)
        with engine:
            problems = engine.check()
    print(json.dumps({"restored": str(target / "data.mdb"), "problems": problems}))
    return 0 if not problems else 1
