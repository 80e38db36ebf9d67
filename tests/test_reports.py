"""Reports and reconciliation without a server: each report on the known book of
tests/reports_support.py with its exact figures, paging that adds up to the same figures, a
settlement file with every kind of mismatch, a re-run that changes nothing, and the file
format's rules (exact decimal amounts, header, bad rows refused by line)."""

from __future__ import annotations

import asyncio

import pytest

from kamicore import limits
from kamicore.domain import reconciliation, reports
from kamicore.engine import Engine, InvalidArgument
from kamicore.statuses import ReconcileSettlementStatus

from . import reports_support as book
from .support import FakeClock


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    monkeypatch.delenv("KAMICORE_MASTER_KEY", raising=False)
    clock = FakeClock()
    with Engine(tmp_path / "data", clock=clock) as engine:
        yield engine, book.seed(engine, clock)


def test_sales_by_day_sku_and_channel_with_margins(seeded):
    engine, days = seeded
    rows, cursor = reports.sales(engine, days["start"], days["end"])
    assert cursor == ""
    assert [tuple(row.values()) for row in rows] == [
        (reports.day(days["start"] + index * book.DAY_MS), *rest)
        for index, *rest in book.SALES]
    only_day_one, _ = reports.sales(engine, days["start"] + book.DAY_MS, days["end"])
    assert {row["currency"] for row in only_day_one} == {"CNY", "USD"}  # never added together
    assert len(only_day_one) == 2


def test_pages_of_a_report_add_up_to_the_whole(seeded, monkeypatch):
    engine, days = seeded
    whole, _ = reports.sales(engine, days["start"], days["end"])
    monkeypatch.setattr(limits, "report_records_scanned_max", 1)
    pages, cursor = [], ""
    while True:
        rows, cursor = reports.sales(engine, days["start"], days["end"], cursor)
        pages.append(rows)
        if not cursor:
            break
    assert len(pages) > 3
    assert reports.merge(pages, ("day", "sku_id", "channel", "currency")) == whole


def test_supplier_statement_with_late_and_unsettled_attempts_apart(seeded):
    engine, days = seeded
    rows, flagged, cursor = reports.supplier_statement(engine, days["start"], days["end"])
    assert cursor == ""
    assert [tuple(row.values()) for row in rows] == book.STATEMENT
    assert [(item["supplier_id"], item["request_id"], item["reason"]) for item in flagged] \
        == book.FLAGGED
    only, flagged, _ = reports.supplier_statement(engine, days["start"], days["end"], "S-2")
    assert [row["supplier_id"] for row in only] == ["S-2"]
    assert [item["request_id"] for item in flagged] == ["tu-pending"]


def test_stock_valuation_and_expiring(seeded):
    engine, days = seeded
    rows, cursor = reports.stock_valuation(engine)
    assert cursor == ""
    assert [(row["sku_id"], row["batch_id"], row["supplier_id"], row["available"],
             row["sellable"], row["unit_cost_micros"], row["value_micros"])
            for row in rows] == book.STOCK
    assert {row["currency"] for row in rows} == {"CNY"}
    soon, _ = reports.stock_expiring(engine, 7)
    assert [row["batch_id"] for row in soon] == ["b1"]
    later, _ = reports.stock_expiring(engine, 60)
    assert [row["batch_id"] for row in later] == ["b1", "b2"]
    with pytest.raises(InvalidArgument, match="within_days"):
        reports.stock_expiring(engine, 0)


def test_redemptions_by_terminal_and_risk_decisions_by_rule(seeded):
    engine, days = seeded
    rows, cursor = reports.redemptions(engine, days["start"], days["end"])
    assert cursor == ""
    assert [tuple(row.values()) for row in rows] == book.REDEMPTIONS
    rows, cursor = reports.risk_decisions(engine, days["start"], days["end"])
    assert cursor == ""
    assert [tuple(row.values()) for row in rows] == book.RISK
    later, _ = reports.risk_decisions(engine, days["start"] + book.DAY_MS, days["end"])
    assert [tuple(row.values()) for row in later] == [
        ("", "REVIEW", 1), ("big_amount", "REVIEW", 1), ("new_account", "REVIEW", 1)]


def test_a_settlement_file_with_every_kind_of_mismatch_then_the_same_file_again(seeded):
    engine, days = seeded
    status, run = asyncio.run(reconciliation.reconcile(engine, days["csv"], "", "test"))
    assert status == ReconcileSettlementStatus.RECONCILED
    assert run["counts"] == {"MATCHED": 2, "AMOUNT_MISMATCH": 1, "MISSING_IN_KAMICORE": 1,
                             "MISSING_IN_FILE": 1, "DUPLICATE_PAYMENT": 1}
    assert (run["from_ms"], run["to_ms"], run["provider"]) == (days["t0"], days["t1"] + 1,
                                                               "default")
    lines = reconciliation.lines(engine, run["run_id"], 0, 100)
    assert [(line["status"], line["line"], line["payment_reference"], line["order_id"],
             line["file_amount_micros"], line["booked_amount_micros"]) for line in lines] \
        == book.EXPECTED_LINES
    committed = engine.commits
    again, same = asyncio.run(reconciliation.reconcile(engine, days["csv"], "", "test"))
    assert (again, same) == (ReconcileSettlementStatus.ALREADY_RECONCILED, run)
    assert engine.commits == committed  # nothing written
    assert reconciliation.runs(engine, 0, 10) == [run]


@pytest.mark.parametrize("text, micros", [
    ("12.34", 12_340_000), ("0.000001", 1), ("7", 7_000_000), ("1234567.5", 1_234_567_500_000),
    ("0.1", 100_000),  # exactly: 0.1 has no float error here
])
def test_amounts_convert_exactly_to_micros(text, micros):
    assert reconciliation.amount_micros(text, "amount") == micros


@pytest.mark.parametrize("text", ["1.0000001", "-1.00", "1e3", "1,000.00", ".5", "", "١٢"])
def test_amounts_that_are_not_plain_decimals_are_refused(text):
    with pytest.raises(InvalidArgument, match="amount"):
        reconciliation.amount_micros(text, "amount")


def test_a_header_may_reorder_the_columns_and_a_bad_row_is_named_by_line():
    rows = reconciliation.parse(b"time,currency,amount,payment_reference,note\n"
                                b"2026-12-01T10:00:00Z,cny,1.50,ref-1,x\n")
    assert rows == [reconciliation.Row(2, "ref-1", 1_500_000, "CNY", 1_796_119_200_000)]
    assert reconciliation.parse(b"ref-2,2,USD,1700000000000\n")[0].amount_micros == 2_000_000
    with pytest.raises(InvalidArgument, match="csv line 3 time"):
        reconciliation.parse(b"ref-1,1,CNY,1\nref-2,1,CNY,2\nref-3,1,CNY,2026-12-01T10:00\n")
    with pytest.raises(InvalidArgument, match="csv line 1"):
        reconciliation.parse(b"ref-1,1,CNY\n")
    with pytest.raises(InvalidArgument, match="no rows"):
        reconciliation.parse(b"payment_reference,amount,currency,time\n")


def test_another_currency_is_a_mismatch_and_a_period_too_large_stores_nothing(seeded,
                                                                             monkeypatch):
    engine, days = seeded
    lines, _, _ = reconciliation.match(engine, [
        reconciliation.Row(1, "pay-A", 190 * book.M, "USD", days["t0"])])
    assert [(line["status"], line["currency"], line["booked_currency"]) for line in lines][0] \
        == ("AMOUNT_MISMATCH", "USD", "CNY")
    monkeypatch.setattr(limits, "settlement_entries_scanned_max", 3)
    status, run = asyncio.run(reconciliation.reconcile(engine, days["csv"], "", "test"))
    assert (status, run) == (ReconcileSettlementStatus.PERIOD_TOO_LARGE, None)
    assert reconciliation.runs(engine, 0, 10) == []
