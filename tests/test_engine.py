"""Table-driven tests of every operation: one row per status, in precedence order, against
both the compiled and the interpreted engine (the `engine` fixture)."""

from __future__ import annotations

import pytest

from kamicore.engine import InvalidArgument
from kamicore.statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, OrderState,
    ReleaseStatus, ReportInvalidStatus, ReserveStatus,
)

from .support import T0_MS, sell

NEVER = 2**62


# -- import ------------------------------------------------------------------------------

@pytest.mark.parametrize("code, status", [
    ("GOOD-0002", ImportCodeStatus.IMPORTED),
    ("", ImportCodeStatus.EMPTY),
    (" - -", ImportCodeStatus.EMPTY),
    ("X" * 129, ImportCodeStatus.TOO_LONG),
    ("X" * 128, ImportCodeStatus.IMPORTED),
    ("TAB\tCODE", ImportCodeStatus.CONTROL_CHARACTER),
    ("DEL\x7fCODE", ImportCodeStatus.CONTROL_CHARACTER),
    (b"\xff\xfeCODE", ImportCodeStatus.NOT_UTF8),
    ("CAFÉ-0001", ImportCodeStatus.IMPORTED),
    ("good 0001", ImportCodeStatus.DUPLICATE),  # same code, other case and separators
])
def test_import_status_per_code(engine, code, status):
    engine.import_codes("sku", "batch", ["GOOD-0001"])
    result = engine.import_codes("sku", "batch", [code])
    assert result.statuses == [status]
    expected_available = 2 if status == ImportCodeStatus.IMPORTED else 1
    assert engine.stock("sku").counts[CodeState.AVAILABLE] == expected_available


def test_import_reports_rows_and_counts(engine):
    result = engine.import_codes("sku", "batch", ["A-1", "", "B-2", "a1", "C\x00", "D-4"])
    assert result.status == ImportStatus.OK
    assert (result.imported, result.duplicates) == (3, 1)
    assert result.rejected == [(1, ImportCodeStatus.EMPTY), (4, ImportCodeStatus.CONTROL_CHARACTER)]
    assert [bool(code_id) for code_id in result.code_ids] == [True, False, True, False, False,
                                                             True]


def test_import_into_a_batch_with_other_terms_is_refused_and_changes_nothing(engine):
    engine.import_codes("sku", "batch", ["A-1"], unit_cost_micros=5)
    for changed in ({"unit_cost_micros": 6}, {"supplier": "other"},
                    {"valid_until_ms": T0_MS + 1}):
        result = engine.import_codes("sku", "batch", ["B-2"], **{"unit_cost_micros": 5,
                                                                 **changed})
        assert result.status == ImportStatus.BATCH_MISMATCH
    assert engine.import_codes("other-sku", "batch", ["B-2"], unit_cost_micros=5).status == (
        ImportStatus.BATCH_MISMATCH)
    assert engine.skus() == ["sku"]
    assert engine.stock("sku").counts[CodeState.AVAILABLE] == 1
    assert engine.import_codes("sku", "batch", ["B-2"], unit_cost_micros=5).imported == 1


# -- reserve -----------------------------------------------------------------------------

def test_reserve_statuses_in_precedence_order(engine):
    engine.import_codes("sku", "batch", ["A-1", "B-2", "C-3"])
    [first] = engine.reserve([("o1", [("sku", 2)], 60)])
    assert first.status == ReserveStatus.RESERVED and len(first.code_ids) == 2
    # the same order again: the first answer
    assert engine.reserve([("o1", [("sku", 2)], 60)]) == [first]
    # the same id with other lines, even naming an unknown sku: conflict comes first
    assert engine.reserve([("o1", [("sku", 1)], 60)])[0].status == (
        ReserveStatus.ORDER_ID_CONFLICT)
    assert engine.reserve([("o1", [("nope", 2)], 60)])[0].status == (
        ReserveStatus.ORDER_ID_CONFLICT)
    assert engine.reserve([("o2", [("sku", 1), ("nope", 1)], 60)])[0].status == (
        ReserveStatus.SKU_NOT_FOUND)
    assert engine.reserve([("o3", [("sku", 2)], 60)])[0].status == (
        ReserveStatus.INSUFFICIENT_STOCK)
    stock = engine.stock("sku")
    assert (stock.counts[CodeState.AVAILABLE], stock.counts[CodeState.RESERVED]) == (1, 2)


def test_reserve_is_all_or_nothing_across_lines(engine):
    engine.import_codes("a", "batch-a", ["A-1", "A-2"])
    engine.import_codes("b", "batch-b", ["B-1"])
    [result] = engine.reserve([("o1", [("a", 2), ("b", 2)], 60)])
    assert result.status == ReserveStatus.INSUFFICIENT_STOCK
    assert engine.stock("a").counts[CodeState.AVAILABLE] == 2
    assert engine.stock("b").counts[CodeState.AVAILABLE] == 1
    assert engine.order("o1") is None


def test_one_bad_order_does_not_fail_the_others_in_its_call(engine):
    engine.import_codes("sku", "batch", ["A-1", "B-2"])
    results = engine.reserve([("o1", [("sku", 1)], 60), ("o2", [("sku", 5)], 60),
                              ("o3", [("sku", 1)], 60)])
    assert [result.status for result in results] == [
        ReserveStatus.RESERVED, ReserveStatus.INSUFFICIENT_STOCK, ReserveStatus.RESERVED]


def test_picking_is_fefo_and_skips_expired_and_not_yet_valid(engine, clock):
    engine.import_codes("sku", "late", ["LATE-1"], valid_until_ms=T0_MS + 90_000)
    engine.import_codes("sku", "soon", ["SOON-1"], valid_until_ms=T0_MS + 30_000)
    engine.import_codes("sku", "expired", ["OLD-1"], valid_until_ms=T0_MS)
    engine.import_codes("sku", "future", ["FUTURE-1"], valid_from_ms=T0_MS + 1,
                        valid_until_ms=T0_MS + 10_000)
    engine.import_codes("sku", "never", ["NEVER-1"])
    [result] = engine.reserve([("o1", [("sku", 3)], 60)])
    picked = [engine.code(code_id).batch for code_id in result.code_ids]
    assert picked == ["soon", "late", "never"]
    stock = engine.stock("sku")
    assert (stock.sellable, stock.expired_available) == (0, 1)
    clock.advance(1)
    assert engine.stock("sku").sellable == 1  # the future code became valid
    assert engine.reserve([("o2", [("sku", 2)], 60)])[0].status == (
        ReserveStatus.INSUFFICIENT_STOCK)


# -- confirm, release, holds -------------------------------------------------------------

def test_confirm_statuses(engine, clock):
    engine.import_codes("sku", "batch", ["A-1", "B-2"])
    engine.reserve([("o1", [("sku", 1)], 10)])
    [sold] = engine.confirm(["o1"])
    assert sold.status == ConfirmStatus.SOLD and not sold.late
    assert engine.confirm(["o1"]) == [sold]  # a retry: the first answer
    assert engine.confirm(["nope"])[0].status == ConfirmStatus.ORDER_NOT_FOUND
    engine.reserve([("o2", [("sku", 1)], 10)])
    clock.advance(10_000)
    assert engine.expire_holds() == ["o2"]
    engine.reserve([("o3", [("sku", 1)], 10)])  # someone else takes the last code
    [late] = engine.confirm(["o2"])
    assert late.status == ConfirmStatus.ORDER_RELEASED_NO_STOCK
    assert engine.order("o2").state == OrderState.EXPIRED


def test_payment_after_hold_expiry_still_delivers_when_stock_allows(engine, clock):
    engine.import_codes("sku", "batch", ["A-1", "B-2"])
    [held] = engine.reserve([("o1", [("sku", 1)], 10)])
    clock.advance(10_001)
    assert engine.expire_holds() == ["o1"]
    assert engine.stock("sku").counts[CodeState.AVAILABLE] == 2
    [late] = engine.confirm(["o1"])
    assert late.status == ConfirmStatus.SOLD and late.late and len(late.code_ids) == 1
    order = engine.order("o1", reveal=True)
    assert order.state == OrderState.PAID and len(order.plaintexts) == 1


def test_payment_racing_the_sweeper_keeps_the_held_codes(engine, clock):
    engine.import_codes("sku", "batch", ["A-1"])
    [held] = engine.reserve([("o1", [("sku", 1)], 10)])
    clock.advance(60_000)  # deadline passed, sweeper has not run yet
    [sold] = engine.confirm(["o1"])
    assert sold.status == ConfirmStatus.SOLD and sold.code_ids == held.code_ids
    assert engine.expire_holds() == []


def test_release_statuses(engine):
    engine.import_codes("sku", "batch", ["A-1", "B-2"])
    engine.reserve([("o1", [("sku", 1)], 60), ("o2", [("sku", 1)], 60)])
    engine.confirm(["o2"])
    assert engine.release(["o1", "o1", "o2", "nope"]) == [
        ReleaseStatus.RELEASED, ReleaseStatus.RELEASED, ReleaseStatus.ORDER_SOLD,
        ReleaseStatus.ORDER_NOT_FOUND]
    assert engine.stock("sku").counts[CodeState.AVAILABLE] == 1
    assert engine.order("o1").codes == []


def test_expire_holds_in_deadline_order_within_limit(engine, clock):
    engine.import_codes("sku", "batch", [f"C-{n}" for n in range(5)])
    engine.reserve([("late", [("sku", 1)], 30), ("early", [("sku", 1)], 10),
                    ("mid", [("sku", 1)], 20), ("kept", [("sku", 1)], 100)])
    clock.advance(30_000)
    assert engine.expire_holds(limit=2) == ["early", "mid"]
    assert engine.expire_holds(limit=2) == ["late"]
    assert engine.expire_holds() == []
    assert engine.stock("sku").counts[CodeState.RESERVED] == 1


# -- freeze, unfreeze, void --------------------------------------------------------------

def test_freeze_unfreeze_void_table(engine):
    sell(engine, ["SOLD-1", "SOLD-2"])
    [available_id] = engine.import_codes("sku", "batch2", ["AVAIL-1"]).code_ids
    engine.import_codes("sku", "batch3", ["HELD-1"])
    [held] = engine.reserve([("held", [("sku", 2)], 60)])
    rows = [
        (engine.freeze, "SOLD-1", CodeOpStatus.DONE, CodeState.FROZEN),
        (engine.freeze, "SOLD-1", CodeOpStatus.WRONG_STATE, CodeState.FROZEN),
        (engine.unfreeze, "SOLD-1", CodeOpStatus.DONE, CodeState.SOLD),
        (engine.unfreeze, "SOLD-1", CodeOpStatus.WRONG_STATE, CodeState.SOLD),
        (engine.freeze, held.code_ids[0], CodeOpStatus.WRONG_STATE, CodeState.RESERVED),
        (engine.void, "SOLD-2", CodeOpStatus.DONE, CodeState.VOID),
        (engine.void, "SOLD-2", CodeOpStatus.WRONG_STATE, CodeState.VOID),
        (engine.freeze, "SOLD-2", CodeOpStatus.WRONG_STATE, CodeState.VOID),
        (engine.freeze, "", CodeOpStatus.MALFORMED, None),
        (engine.freeze, "NOPE-1", CodeOpStatus.NOT_FOUND, None),
        (engine.freeze, 999_999, CodeOpStatus.NOT_FOUND, None),
    ]
    for operation, ref, status, state in rows:
        [result] = operation([ref])
        assert (result.status, result.state) == (status, state), (operation.__name__, ref)
    assert engine.check() == []


def test_freezing_stock_takes_it_off_sale_until_unfrozen(engine):
    engine.import_codes("sku", "batch", ["A-1"])
    assert engine.freeze(["A-1"])[0].status == CodeOpStatus.DONE
    assert engine.reserve([("o1", [("sku", 1)], 60)])[0].status == (
        ReserveStatus.INSUFFICIENT_STOCK)
    assert engine.unfreeze(["a1"])[0].state == CodeState.AVAILABLE
    assert engine.reserve([("o2", [("sku", 1)], 60)])[0].status == ReserveStatus.RESERVED


# -- report invalid ----------------------------------------------------------------------

def test_report_invalid_reissues_then_refuses(engine):
    [bad, good] = sell(engine, ["BAD-1", "GOOD-1"])
    engine.import_codes("sku", "spare", ["SPARE-1"])
    [result] = engine.report_invalid([("order", bad)])
    assert result.status == ReportInvalidStatus.REISSUED
    assert engine.report_invalid([("order", bad)]) == [result]  # a retry: same replacement
    order = engine.order("order", reveal=True)
    assert sorted(order.plaintexts) == ["BAD-1", "GOOD-1", "SPARE-1"]
    assert engine.code(bad).state == CodeState.INVALID
    assert engine.code(bad).replaced_by == result.replacement_code_id
    [no_stock] = engine.report_invalid([("order", good)])
    assert no_stock == (no_stock.__class__(ReportInvalidStatus.NO_REPLACEMENT, 0))
    engine.redeem([("SPARE-1", "r")], "T-1")
    rows = [
        (("nope", bad), ReportInvalidStatus.ORDER_NOT_FOUND),
        (("order", 999), ReportInvalidStatus.CODE_NOT_IN_ORDER),
        (("order", result.replacement_code_id), ReportInvalidStatus.NOT_SOLD),  # redeemed
    ]
    for item, status in rows:
        assert engine.report_invalid([item])[0].status == status


# -- bad input: named field, nothing changed ---------------------------------------------

BAD_CALLS = [
    ("import_codes", ("", "b", ["A"]), {}, "sku"),
    ("import_codes", ("s", "b", []), {}, "codes"),
    ("import_codes", ("s", "b", [42]), {}, "codes[0]"),
    ("import_codes", ("s", "b", ["A"]), {"unit_cost_micros": -1}, "unit_cost_micros"),
    ("import_codes", ("s", "b", ["A"]), {"valid_from_ms": 5, "valid_until_ms": 5},
     "valid_until_ms"),
    ("import_codes", ("s" * 65, "b", ["A"]), {}, "sku"),
    ("reserve", ([("o", [("s", 0)], 60)],), {}, "orders[0].lines[0].quantity"),
    ("reserve", ([("o", [("s", 1001)], 60)],), {}, "orders[0].lines[0].quantity"),
    ("reserve", ([("o", [("s", 1)], 0)],), {}, "orders[0].hold_seconds"),
    ("reserve", ([("o", [("s", 1)], 86_401)],), {}, "orders[0].hold_seconds"),
    ("reserve", ([("o", [], 60)],), {}, "orders[0].lines"),
    ("reserve", ([("o\n", [("s", 1)], 60)],), {}, "orders[0].order_id"),
    ("confirm", ([],), {}, "order_ids"),
    ("redeem", ([("A", "")], "T-1"), {}, "items[0].request_id"),
    ("redeem", ([("A", "r")], ""), {}, "terminal"),
    ("redeem", ([("A", "r")] * 1001, "T-1"), {}, "items"),
    ("freeze", ([True],), {}, "codes[0]"),
    ("report_invalid", ([("o", 0)],), {}, "items[0].code_id"),
]


@pytest.mark.parametrize("method, args, options, field", BAD_CALLS)
def test_bad_input_names_the_field_and_changes_nothing(engine, method, args, options, field):
    engine.import_codes("s", "b", ["KEEP-1"])
    before = (engine.counters(), list(engine.audit_events()))
    with pytest.raises(InvalidArgument) as raised:
        getattr(engine, method)(*args, **options)
    assert raised.value.field == field
    assert (engine.counters(), list(engine.audit_events())) == before


# -- audit -------------------------------------------------------------------------------

def test_every_transition_is_one_audit_event(engine):
    sell(engine, ["AUD-1", "AUD-2"])
    engine.redeem([("AUD-1", "r")], "T-7")
    events = list(engine.audit_events())
    transitions = [(event[4], event[5], event[6]) for event in events]
    available, reserved, sold, redeemed = (CodeState.AVAILABLE, CodeState.RESERVED,
                                           CodeState.SOLD, CodeState.REDEEMED)
    assert transitions == [(1, 0, available), (2, 0, available), (1, available, reserved),
                           (2, available, reserved), (1, reserved, sold), (2, reserved, sold),
                           (1, sold, redeemed)]
    assert [event[0] for event in events] == list(range(1, 8))
    assert events[-1][3] == "pos:T-7"
    report = engine.verify_audit()
    assert report.ok and report.events == 7


def test_tampering_with_the_audit_log_is_detected(engine):
    sell(engine, ["AUD-1"])
    with engine.env.begin(write=True) as txn:
        key, value = next(iter(txn.cursor(db=engine.dbs.audit)))
        tampered = bytearray(value)
        tampered[-1] ^= 1
        txn.put(key, bytes(tampered), db=engine.dbs.audit)
    report = engine.verify_audit()
    assert not report.ok and "hash" in report.problem
