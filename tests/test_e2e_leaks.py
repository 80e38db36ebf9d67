"""Leak detection end to end, against the shared `kamicore serve` (tests/conftest.py): a code
presented at a till before its sale is frozen at once, swapped out of the unpaid order holding
it, counted in /metrics and named in the audit log; the buyer never receives it. The engine's
rules in detail are tests/test_engine_leaks.py's."""

from __future__ import annotations

from kamicore.v1 import common_pb2

from .e2e_support import CREATED, PAID, R, metric_samples, metric_value, plaintexts, uid
from .server_harness import order_request, pay_request, stocked_sku

LEAKS = "kamicore_leaked_code_presentations_total"


def test_a_held_code_presented_at_a_till_is_frozen_and_the_buyer_gets_another(server, c):
    sku_id = uid("leak")
    codes = stocked_sku(c.admin, sku_id, 3)
    created = c.web.orders.CreateOrder(order_request(uid("leak-order"), sku_id, 1))
    assert created.status == CREATED
    states = {code: c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=code)).state
              for code in codes}
    [held] = [code for code, state in states.items() if state == common_pb2.CODE_STATE_RESERVED]
    key, _ = server.create_key("pos", uid("T-leak"))
    pos = server.client(key, fresh=True)
    before = metric_samples(server.metrics())
    events_before = server.audit_events()

    reply = pos.redemption.Redeem(R.RedeemRequest(code=held, request_id=uid("leak")))
    assert (reply.status, reply.code_id) == (R.REDEEM_STATUS_NOT_FOUND, 0)  # as if unknown
    looked_up = c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=held))
    assert looked_up.state == common_pb2.CODE_STATE_FROZEN
    after = metric_samples(server.metrics())
    assert metric_value(after, LEAKS) - metric_value(before, LEAKS) == 1
    # one leak event (the freeze) and one for the code put in its place
    assert server.audit_events() - events_before == 2

    paid = c.web.orders.ConfirmPayment(pay_request(created.order))
    assert paid.status == PAID
    delivered = plaintexts(paid.order)
    assert len(delivered) == 1 and held not in delivered and delivered[0] in codes
    # presented again: the same answer, and still frozen
    again = pos.redemption.Redeem(R.RedeemRequest(code=held, request_id=uid("leak")))
    assert again.status == R.REDEEM_STATUS_NOT_FOUND
    assert c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=held)).state == \
        common_pb2.CODE_STATE_FROZEN
