"""Reports and reconciliation over a real server and the CLI: a data dir seeded with the known
book of tests/reports_support.py, then `kamicore serve` on it. A settlement file with every kind
of mismatch reconciled by `kamicore report reconcile` (its CSV export parses back to the
expected lines), the same file again through the RPC (the stored run, nothing new), a bad file
refused by line; every report's CSV parses back to the exact figures; charts are PNGs."""

from __future__ import annotations

import csv
import json
import time

import grpc
import pytest

from kamicore.domain.reports import day
from kamicore.engine import Engine
from kamicore.v1 import reports_pb2

from . import reports_support as book
from .server_harness import Server, cli
from .support import FakeClock

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
chart_bytes_min = 5_000  # a drawn chart, not an empty file


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    base = tmp_path_factory.mktemp("reports")
    clock = FakeClock(int(time.time() * 1000) - 2 * book.DAY_MS)  # two days ago, then one
    with Engine(base / "data", clock=clock) as engine:
        days = book.seed(engine, clock)
    server = Server(base / "data", base, "reports").start()
    try:
        yield server, days, base
    finally:
        assert server.stop() == 0, server.logs()[-3000:]


def _where(server) -> list[str]:
    return ["--target", server.target, "--key", server.admin_key]


def _period(days) -> list[str]:
    return ["--from", str(days["start"]), "--to", str(days["end"])]


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_a_settlement_file_with_every_mismatch_through_the_cli_then_the_rpc(seeded):
    server, days, base = seeded
    (base / "settlement.csv").write_bytes(days["csv"])
    result = cli(server.data_dir, "report", "reconcile", str(base / "settlement.csv"),
                 "--provider", "alipay", "--csv", str(base / "lines.csv"), *_where(server))
    status, summary = (json.loads(line) for line in result.stdout.splitlines())
    assert status == {"status": "RECONCILED"}
    assert (summary["matched"], summary["amount_mismatch"], summary["missing_in_kamicore"],
            summary["missing_in_file"], summary["duplicate_payment"], summary["provider"]) \
        == (2, 1, 1, 1, 1, "alipay")
    lines = _csv(base / "lines.csv")
    assert [(line["status"], int(line["file_line"]), line["payment_reference"],
             line["order_id"], int(line["file_amount_micros"]),
             int(line["booked_amount_micros"])) for line in lines] == book.EXPECTED_LINES

    admin = server.client(server.admin_key)
    again = admin.reports.ReconcileSettlement(reports_pb2.ReconcileSettlementRequest(
        csv=days["csv"], provider="other"))
    assert again.status == reports_pb2.RECONCILE_SETTLEMENT_STATUS_ALREADY_RECONCILED
    assert (again.reconciliation.run_id, again.reconciliation.provider) \
        == (summary["run_id"], "alipay")
    with pytest.raises(grpc.RpcError) as refused:
        admin.reports.ReconcileSettlement(reports_pb2.ReconcileSettlementRequest(
            csv=days["csv"] + b"pay-Z,1.0000001,CNY,1\n"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "csv line 8 amount" in refused.value.details()
    runs = admin.reports.ListReconciliations(reports_pb2.ListReconciliationsRequest())
    assert [run.run_id for run in runs.reconciliations] == [summary["run_id"]]
    page = admin.reports.GetReconciliation(reports_pb2.GetReconciliationRequest(
        run_id=summary["run_id"], after_line=4, page_size=1))
    assert [(line.number, line.payment_reference) for line in page.lines] == [(5, "pay-D")]
    assert page.lines[0].file_amount.currency == "USD"
    listed = cli(server.data_dir, "report", "runs", *_where(server)).stdout.splitlines()
    assert [json.loads(line)["sha256"] for line in listed] == [summary["sha256"]]


def test_sales_csv_and_chart(seeded):
    server, days, base = seeded
    chart = base / "sales.png"
    cli(server.data_dir, "report", "sales", *_period(days), "--csv", str(base / "sales.csv"),
        "--chart", str(chart), *_where(server))
    rows = _csv(base / "sales.csv")
    assert [(row["day"], row["sku_id"], row["channel"], row["currency"],
             *(int(row[name]) for name in ("orders", "quantity", "price_micros", "cost_micros",
                                           "margin_micros"))) for row in rows] == [
        (day(days["start"] + index * book.DAY_MS), *rest) for index, *rest in book.SALES]
    data = chart.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > chart_bytes_min


def test_supplier_statement_stock_redemptions_and_risk_as_csv(seeded):
    server, days, base = seeded
    cli(server.data_dir, "report", "suppliers", *_period(days), "--csv",
        str(base / "suppliers.csv"), "--chart", str(base / "suppliers.png"), *_where(server))
    assert [tuple(int(value) if value.isdigit() else value for value in row.values())
            for row in _csv(base / "suppliers.csv")] == book.STATEMENT
    data = (base / "suppliers.png").read_bytes()  # S-1/gift-100: 3 of 4 calls succeeded
    assert data.startswith(PNG_MAGIC) and len(data) > chart_bytes_min
    printed = cli(server.data_dir, "report", "suppliers", *_period(days),
                  *_where(server)).stdout.splitlines()
    flagged = [json.loads(line)["flagged"] for line in printed if "flagged" in line]
    assert [(item["supplier_id"], item["request_id"], item["reason"]) for item in flagged] \
        == book.FLAGGED

    cli(server.data_dir, "report", "stock", "--csv", str(base / "stock.csv"), *_where(server))
    assert [(row["sku_id"], row["batch_id"], row["supplier_id"], int(row["available"]),
             int(row["sellable"]), int(row["unit_cost_micros"]), int(row["value_micros"]))
            for row in _csv(base / "stock.csv")] == book.STOCK
    chart = base / "expiring.png"
    cli(server.data_dir, "report", "expiring", "--days", "7", "--csv",
        str(base / "expiring.csv"), "--chart", str(chart), *_where(server))
    assert [row["batch_id"] for row in _csv(base / "expiring.csv")] == ["b1"]
    data = chart.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > chart_bytes_min

    cli(server.data_dir, "report", "redemptions", *_period(days), "--csv",
        str(base / "redemptions.csv"), *_where(server))
    assert [(row["terminal"], row["sku_id"], int(row["redeemed"]), int(row["frozen"]))
            for row in _csv(base / "redemptions.csv")] == book.REDEMPTIONS
    cli(server.data_dir, "report", "risk", *_period(days), "--csv", str(base / "risk.csv"),
        *_where(server))
    assert [(row["rule"], row["decision"], int(row["orders"]))
            for row in _csv(base / "risk.csv")] == book.RISK


def test_reports_refuse_bad_input_naming_the_field(seeded):
    server, days, base = seeded
    admin = server.client(server.admin_key)
    for call, request, field in (
            (admin.reports.StockExpiring, reports_pb2.StockExpiringRequest(within_days=0),
             "within_days"),
            (admin.reports.SalesReport, reports_pb2.SalesReportRequest(cursor="x"), "cursor"),
            (admin.reports.SalesReport, reports_pb2.SalesReportRequest(
                period=reports_pb2.ReportPeriod(from_ms=5, to_ms=4)), "period.to_ms")):
        with pytest.raises(grpc.RpcError) as refused:
            call(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in refused.value.details()
    missing = admin.reports.GetReconciliation(reports_pb2.GetReconciliationRequest(run_id=99))
    assert missing.status == reports_pb2.RECONCILIATION_LOOKUP_STATUS_NOT_FOUND
