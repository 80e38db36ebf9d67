"""Redeem and verify, table-driven: one row per status, in precedence order, against both the
compiled and the interpreted engine (the `engine` fixture); retries of committed requests."""

from __future__ import annotations

import pytest

from kamicore.statuses import CodeState, RedeemStatus, VerifyStatus

from .support import T0_MS, sell


# -- redeem ------------------------------------------------------------------------------

def test_redeem_statuses_in_precedence_order(engine, clock):
    sold = sell(engine, ["RED-1", "VOID-1", "INV-1", "FRZ-1", "OK-1", "OK-2"],
                valid_until_ms=T0_MS + 60_000)
    engine.import_codes("sku", "stock", ["STOCK-1"])
    engine.import_codes("sku", "future", ["FUT-1"], valid_from_ms=T0_MS + 1_000)
    engine.reserve([("o-fut", [("sku", 1)], 60)])  # takes STOCK-1 (FUT-1 is not yet valid)
    engine.void(["VOID-1"])
    engine.report_invalid([("order", sold[2])])
    engine.freeze(["FRZ-1"])
    engine.redeem([("RED-1", "first")], "T-9")
    rows = [
        ("OK-1", "r1", RedeemStatus.REDEEMED),
        ("", "r2", RedeemStatus.MALFORMED),
        ("OK-2", "r1", RedeemStatus.REQUEST_ID_CONFLICT),  # r1 was OK-1's
        ("NOPE-1", "r3", RedeemStatus.NOT_FOUND),
        ("VOID-1", "r4", RedeemStatus.VOID),
        ("INV-1", "r5", RedeemStatus.INVALID),
        ("FRZ-1", "r6", RedeemStatus.FROZEN),
        ("RED-1", "r7", RedeemStatus.ALREADY_REDEEMED),
        ("STOCK-1", "r8", RedeemStatus.NOT_SOLD),
    ]
    results = engine.redeem([(code, request) for code, request, _ in rows], "T-1")
    assert [result.status for result in results] == [status for _, _, status in rows]
    already = results[7]
    assert (already.redeemed_by, already.redeemed_at_ms) == ("T-9", T0_MS)
    # validity window: a sold code that is not yet valid, then one that expired
    engine.import_codes("sku2", "b-future", ["LATER-1"], valid_from_ms=T0_MS + 5_000)
    clock.advance(5_000)
    engine.reserve([("o-later", [("sku2", 1)], 60)])
    engine.confirm(["o-later"])
    clock.now_ms = T0_MS + 4_000
    assert engine.redeem([("LATER-1", "r9")], "T-1")[0].status == RedeemStatus.NOT_YET_VALID
    clock.now_ms = T0_MS + 60_000
    assert engine.redeem([("OK-2", "r10")], "T-1")[0].status == RedeemStatus.EXPIRED


def test_redeem_exactly_once_and_idempotent_retry(engine, clock):
    sell(engine, ["ABCD-EFGH-1234"])
    [first] = engine.redeem([("abcd efgh 1234", "req-1")], "T-1")
    assert first.status == RedeemStatus.REDEEMED
    clock.advance(5_000)
    # the same terminal retrying the same request: the same answer, same time
    assert engine.redeem([("ABCD-EFGH-1234", "req-1")], "T-1") == [first]
    # anyone else, or the same terminal with a new request: already redeemed, when and where
    [again] = engine.redeem([("ABCDEFGH1234", "req-2")], "T-1")
    [other] = engine.redeem([("ABCDEFGH1234", "req-1")], "T-2")
    for answer in (again, other):
        assert answer.status == RedeemStatus.ALREADY_REDEEMED
        assert (answer.redeemed_at_ms, answer.redeemed_by) == (T0_MS, "T-1")
    assert engine.stock("sku").counts[CodeState.REDEEMED] == 1


def test_a_retry_of_committed_requests_is_answered_without_a_commit(engine, clock):
    sell(engine, ["RTY-1", "RTY-2"])
    first = engine.redeem([("RTY-1", "a"), ("RTY-2", "b"), ("NOPE-9", "c")], "T-1")
    commits = engine.commits
    clock.advance(5_000)
    # every item retries a committed request: the settled answers, no group commit, no audit
    audit_before = len(list(engine.audit_events()))
    assert engine.redeem([("rty 1", "a"), ("NOPE-9", "c"), ("RTY-1", "a")], "T-1") == [
        first[0], first[2], first[0]]
    assert engine.redeem([("RTY-2", "a")], "T-1")[0].status == RedeemStatus.REQUEST_ID_CONFLICT
    assert engine.commits == commits
    assert len(list(engine.audit_events())) == audit_before
    # one new request among retries, or a malformed code: the writer decides the whole batch
    [again, new] = engine.redeem([("RTY-1", "a"), ("RTY-2", "d")], "T-1")
    assert (again, new.status) == (first[0], RedeemStatus.ALREADY_REDEEMED)
    assert engine.redeem([("\x01", "a")], "T-1")[0].status == RedeemStatus.MALFORMED
    assert engine.commits == commits + 2


def test_redeem_within_one_batch_sees_earlier_items(engine):
    sell(engine, ["ONE-1"])
    results = engine.redeem([("ONE-1", "a"), ("ONE-1", "b"), ("ONE-1", "a")], "T-1")
    assert [result.status for result in results] == [
        RedeemStatus.REDEEMED, RedeemStatus.ALREADY_REDEEMED, RedeemStatus.REDEEMED]


def test_first_answer_is_kept_even_after_the_code_changes(engine):
    sell(engine, ["FRZ-1"])
    engine.freeze(["FRZ-1"])
    assert engine.redeem([("FRZ-1", "r1")], "T-1")[0].status == RedeemStatus.FROZEN
    engine.unfreeze(["FRZ-1"])
    assert engine.redeem([("FRZ-1", "r1")], "T-1")[0].status == RedeemStatus.FROZEN
    assert engine.redeem([("FRZ-1", "r2")], "T-1")[0].status == RedeemStatus.REDEEMED


# -- verify ------------------------------------------------------------------------------

def test_verify_reports_state_without_changing_it(engine):
    sell(engine, ["VERIFY-CODE-0001"])
    results = engine.verify(["verify code 0001", "NOPE-1", "\x01"])
    assert [result.status for result in results] == [
        VerifyStatus.FOUND, VerifyStatus.NOT_FOUND, VerifyStatus.MALFORMED]
    view = results[0].code
    assert view.state == CodeState.SOLD and view.masked == "************0001"
    assert "VERIFY" not in repr(view)


@pytest.mark.parametrize("code, masked", [
    ("ABCD-EFGH-IJKL-0001", "***************0001"),
    ("ABCD0001", "******01"),
    ("ABC", "****"),
])
def test_masking_never_shows_more_than_a_quarter(engine, code, masked):
    sell(engine, [code])
    assert engine.verify([code])[0].code.masked == masked
    assert engine.stock("sku").counts[CodeState.SOLD] == 1
