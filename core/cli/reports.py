"""`kamicore report sales|suppliers|stock|expiring|redemptions|risk|reconcile|runs|run`: the
Reports service, called on a running server with an admin key (like `kamicore call`).

Each report pages through the server's bounded replies, adds up rows with the same key
(kamicore.domain.reports.merge), prints one JSON object per row, and with `--csv F` writes
them as CSV (a header row, then the rows; amounts in integer micros with their currency).
`--chart F.png` draws sales (daily sales and margin), expiring (sellable codes by batch) and
suppliers (each supplier's success rate per SKU)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from .. import limits
from ..domain.reports import merge
from . import charts, remote, suppliers
from .data import parse_time_ms

# report -> (method, reply's rows field, the rows' message, the rows' key, chart or None)
REPORTS = {
    "sales": ("SalesReport", "rows", "SalesRow", ("day", "sku_id", "channel", "currency"),
              charts.sales),
    "suppliers": ("SupplierStatement", "rows", "SupplierStatementRow",
                  ("supplier_id", "currency"), None),
    "stock": ("StockValuation", "batches", "BatchValue", ("sku_id", "batch_id"), None),
    "expiring": ("StockExpiring", "batches", "BatchValue", ("sku_id", "batch_id"),
                 charts.expiring),
    "redemptions": ("RedemptionsByTerminal", "rows", "TerminalRedemptions",
                    ("terminal", "sku_id"), None),
    "risk": ("RiskDecisions", "rows", "RiskDecisionRow", ("rule", "decision"), None),
}
_PERIODIC = ("sales", "suppliers", "redemptions", "risk")
LINE_COLUMNS = ("number", "status", "file_line", "payment_reference", "order_id",
                "file_currency", "file_amount_micros", "booked_currency", "booked_amount_micros",
                "time_ms")


def add_commands(commands, target_help: str) -> None:
    report = commands.add_parser("report", help="operators' reports and settlement "
                                 "reconciliation (on a running server, with an admin key)")
    actions = report.add_subparsers(dest="report_command", required=True)
    parsers = []
    for name in REPORTS:
        parser = actions.add_parser(name, help=f"the {name} report")
        if name in _PERIODIC:
            parser.add_argument("--from", dest="from_time", help="ISO 8601 or unix ms "
                                "(default: the start)")
            parser.add_argument("--to", dest="to_time", help="ISO 8601 or unix ms, exclusive "
                                "(default: now)")
        if name == "suppliers":
            parser.add_argument("--supplier", default="", help="only this supplier")
        if name == "expiring":
            parser.add_argument("--days", type=int, default=30,
                                help="batches expiring within this many days (default 30)")
        parser.add_argument("--csv", help="also write the rows to this CSV file")
        if name in ("sales", "expiring", "suppliers"):
            parser.add_argument("--chart", help="draw a PNG chart to this file")
        parser.set_defaults(run_without_engine=command_report, report=name)
        parsers.append(parser)
    reconcile = actions.add_parser("reconcile", help="reconcile a settlement CSV "
                                   "(payment_reference, amount, currency, time)")
    reconcile.add_argument("file")
    reconcile.add_argument("--provider", default="", help="the payment provider's name")
    reconcile.add_argument("--csv", help="write the run's lines to this CSV file")
    reconcile.set_defaults(run_without_engine=command_reconcile)
    runs = actions.add_parser("runs", help="stored reconciliation runs as JSON lines")
    runs.set_defaults(run_without_engine=command_runs)
    run = actions.add_parser("run", help="one reconciliation run and its lines")
    run.add_argument("run_id", type=int)
    run.add_argument("--csv", help="write its lines to this CSV file")
    run.set_defaults(run_without_engine=command_run)
    for parser in (*parsers, reconcile, runs, run):
        parser.add_argument("--target", help=target_help)
        parser.add_argument("--key", help="admin API key (or $KAMICORE_KEY, or --key-file)")
        parser.add_argument("--key-file")


def _call(args, method: str, request):
    from ..v1 import reports_pb2_grpc
    return remote.unary(args, reports_pb2_grpc.ReportsStub, method, request)


def fields(message) -> dict:
    """A flat message's fields by name, as Python values (int64 stays int)."""
    return {field.name: getattr(message, field.name) for field in message.DESCRIPTOR.fields}


def write_csv(path: str, columns, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def _print(row: dict) -> None:
    print(json.dumps(row, ensure_ascii=False))


def _request(args, reports_pb2, cursor: str):
    method = REPORTS[args.report][0]
    request = getattr(reports_pb2, f"{method}Request")(cursor=cursor)
    if args.report in _PERIODIC:
        request.period.from_ms = parse_time_ms(args.from_time, "--from") or 0
        request.period.to_ms = parse_time_ms(args.to_time, "--to") or 0
    if args.report == "suppliers":
        request.supplier_id = args.supplier
    if args.report == "expiring":
        request.within_days = args.days
    return request


def command_report(args) -> int:
    from ..v1 import reports_pb2
    method, rows_field, row_message, key, chart = REPORTS[args.report]
    pages, flagged, cursor = [], [], ""
    while True:
        reply, code = _call(args, method, _request(args, reports_pb2, cursor))
        if reply is None:
            return code
        pages.append([fields(row) for row in getattr(reply, rows_field)])
        flagged += [fields(attempt) for attempt in getattr(reply, "flagged", ())]
        cursor = reply.next_cursor
        if not cursor:
            break
    rows = merge(pages, key)  # a batch comes once: stock rows are only put in order
    for row in rows:
        _print(row)
    for attempt in flagged:
        _print({"flagged": attempt})
    columns = getattr(reports_pb2, row_message).DESCRIPTOR.fields_by_name
    if args.csv:
        write_csv(args.csv, columns, rows)
    if getattr(args, "chart", None):
        if args.report == "suppliers":
            return _supplier_chart(args)
        chart(rows, args.chart)
    return 0


def _supplier_chart(args) -> int:
    """Each supplier's success rate per SKU (Suppliers.GetSupplierStats)."""
    from ..v1 import suppliers_pb2
    found, code = suppliers.every_supplier(args)
    if found is None:
        return code
    rates = []
    for supplier in found:
        if args.supplier and supplier.supplier_id != args.supplier:
            continue
        stats, code = suppliers.call(args, "GetSupplierStats",
                                      suppliers_pb2.GetSupplierStatsRequest(
                                          supplier_id=supplier.supplier_id))
        if stats is None:
            return code
        rates += [(f"{supplier.supplier_id}/{sku.sku_id}", sku.success_rate, sku.attempts)
                  for sku in stats.skus]
    charts.supplier_success(rates, args.chart)
    return 0


def line_fields(line) -> dict:
    from ..v1 import reports_pb2
    return {"number": line.number,
            "status": reports_pb2.ReconciliationOutcome.Name(line.status).removeprefix(
                "RECONCILIATION_OUTCOME_"),
            "file_line": line.file_line, "payment_reference": line.payment_reference,
            "order_id": line.order_id, "file_currency": line.file_amount.currency,
            "file_amount_micros": line.file_amount.amount_micros,
            "booked_currency": line.booked_amount.currency,
            "booked_amount_micros": line.booked_amount.amount_micros, "time_ms": line.time_ms}


def _show_run(args, run_id: int) -> int:
    """Print a run's summary, and write its lines to --csv (every page)."""
    from ..v1 import reports_pb2
    lines, after, summary = [], 0, None
    while True:
        reply, code = _call(args, "GetReconciliation", reports_pb2.GetReconciliationRequest(
            run_id=run_id, after_line=after))
        if reply is None:
            return code
        if reply.status != reports_pb2.RECONCILIATION_LOOKUP_STATUS_FOUND:
            print(f"error: no reconciliation run {run_id}", file=sys.stderr)
            return 1
        summary = fields(reply.reconciliation)
        lines += [line_fields(line) for line in reply.lines]
        if len(reply.lines) < limits.reconciliation_lines_per_page_max:
            break
        after = lines[-1]["number"]
    _print(summary)
    if args.csv:
        write_csv(args.csv, LINE_COLUMNS, lines)
    else:
        for line in lines:
            _print(line)
    return 0


def command_reconcile(args) -> int:
    from ..v1 import reports_pb2
    data = Path(args.file).read_bytes()
    reply, code = _call(args, "ReconcileSettlement", reports_pb2.ReconcileSettlementRequest(
        csv=data, provider=args.provider))
    if reply is None:
        return code
    status = reports_pb2.ReconcileSettlementStatus.Name(reply.status)
    if reply.status not in (reports_pb2.RECONCILE_SETTLEMENT_STATUS_RECONCILED,
                            reports_pb2.RECONCILE_SETTLEMENT_STATUS_ALREADY_RECONCILED):
        print(f"error: {status}", file=sys.stderr)
        return 1
    print(json.dumps({"status": status.removeprefix("RECONCILE_SETTLEMENT_STATUS_")}))
    return _show_run(args, reply.reconciliation.run_id)


def command_runs(args) -> int:
    from ..v1 import reports_pb2
    after = 0
    while True:
        reply, code = _call(args, "ListReconciliations",
                            reports_pb2.ListReconciliationsRequest(after_run_id=after))
        if reply is None:
            return code
        for run in reply.reconciliations:
            _print(fields(run))
        if len(reply.reconciliations) < limits.reconciliations_per_page_max:
            return 0
        after = reply.reconciliations[-1].run_id


def command_run(args) -> int:
    return _show_run(args, args.run_id)


__all__ = ["add_commands"]
