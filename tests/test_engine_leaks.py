"""Leaks, in the engine (compiled and interpreted, the `engine` fixture): a code presented at a
till before its sale is frozen in the redemption's commit, taken out of an unpaid order (another
code in its place, or the order released), named in the audit log with the terminal, and never
delivered. The same rules are the reference model's (tests/reference_till.py), which
tests/test_model.py holds the engine to."""

from __future__ import annotations

from kamicore.statuses import CodeState, ConfirmStatus, OrderState, RedeemStatus

NOT_SOLD = RedeemStatus.NOT_SOLD


def state(engine, code_id: int) -> CodeState:
    return engine.code(code_id).state


def test_a_code_in_stock_presented_at_a_till_is_frozen_and_never_sold(engine):
    result = engine.import_codes("sku", "b", ["LEAK-1", "SAFE-1"])
    leaked, safe = result.code_ids
    [answer] = engine.redeem([("leak-1", "r1")], "T-1")
    assert (answer.status, answer.code_id) == (NOT_SOLD, leaked)
    assert state(engine, leaked) == CodeState.FROZEN
    assert engine.stock("sku").sellable == 1
    [held] = engine.reserve([("o1", [("sku", 1)], 60)])
    assert held.code_ids == [safe]
    assert engine.reserve([("o2", [("sku", 1)], 60)])[0].status.name == "INSUFFICIENT_STOCK"
    # presented again (another request, another terminal): the same answer, nothing more
    assert engine.redeem([("LEAK-1", "r2")], "T-2")[0].status == NOT_SOLD
    assert engine.check() == []


def test_a_held_code_presented_at_a_till_is_swapped_out_of_its_order(engine):
    result = engine.import_codes("sku", "b", ["HELD-1", "HELD-2", "SPARE-1"])
    first, second, spare = result.code_ids
    [held] = engine.reserve([("o1", [("sku", 2)], 60)])
    assert held.code_ids == [first, second]
    assert engine.redeem([("HELD-2", "r1")], "T-1")[0].status == NOT_SOLD
    assert state(engine, second) == CodeState.FROZEN
    order = engine.order("o1")
    assert order.state == OrderState.RESERVED
    assert [code.code_id for code in order.codes] == [first, spare]
    [paid] = engine.confirm(["o1"])
    assert (paid.status, paid.code_ids, paid.late) == (ConfirmStatus.SOLD, [first, spare], False)
    assert "HELD-2" not in engine.order("o1", reveal=True).plaintexts
    assert state(engine, second) == CodeState.FROZEN
    assert engine.check() == []


def test_a_held_code_with_no_spare_releases_its_order(engine):
    result = engine.import_codes("sku", "b", ["ONLY-1", "ONLY-2"])
    first, second = result.code_ids
    engine.reserve([("o1", [("sku", 2)], 60)])
    assert engine.redeem([("ONLY-1", "r1")], "T-1")[0].status == NOT_SOLD
    assert engine.order("o1").state == OrderState.CANCELLED
    assert state(engine, second) == CodeState.AVAILABLE  # back in stock
    # the payment comes: not enough stock without the leaked code, so a refund, never it
    [paid] = engine.confirm(["o1"])
    assert (paid.status, paid.code_ids) == (ConfirmStatus.ORDER_RELEASED_NO_STOCK, [])
    # restocked: the order is filled again from stock, without the leaked code
    more = engine.import_codes("sku", "b2", ["NEW-1"]).code_ids
    [paid] = engine.confirm(["o1"])
    assert (paid.status, sorted(paid.code_ids), paid.late) == (
        ConfirmStatus.SOLD, sorted([second, *more]), True)
    assert state(engine, first) == CodeState.FROZEN
    assert engine.check() == []


def test_the_freeze_is_audited_with_the_terminal_and_an_unfreeze_restocks(engine):
    [leaked] = engine.import_codes("sku", "b", ["LEAK-1"]).code_ids
    engine.redeem([("LEAK-1", "r1")], "T-7")
    leak = next(op for op, name in engine.ops.OP_NAMES.items() if name == "leak")
    events = [(actor, code_id, from_state, to_state)
              for _, _, op, actor, code_id, from_state, to_state, _ in engine.audit_events()
              if op == leak]
    assert events == [("pos:T-7", leaked, CodeState.AVAILABLE, CodeState.FROZEN)]
    assert engine.verify_audit().ok
    engine.unfreeze([leaked])  # an operator's decision: back on sale
    assert state(engine, leaked) == CodeState.AVAILABLE
    assert engine.stock("sku").sellable == 1
