"""The Redemption service end to end, against the shared `kamicore serve` (tests/conftest.py):
each redeem status, retries, batches and streams, verifying, the terminal taken from the key,
and terminals racing for one code over both workers."""

from __future__ import annotations

import asyncio
import time

import grpc
from kamicore.v1 import (
    common_pb2,
    inventory_pb2,
    orders_pb2,
    orders_pb2_grpc,
    redemption_pb2_grpc,
)

from .e2e_support import CREATED, R, assert_no_plaintext, plaintexts, uid
from .server_harness import (
    buy,
    counts,
    create_sku,
    import_codes,
    new_codes,
    order_request,
    stocked_sku,
)


def test_redeem_each_status_over_the_wire(c):
    sku_id = uid("red-statuses")
    codes = stocked_sku(c.admin, sku_id, 8)
    paid = buy(c.web, sku_id, 6)
    sold = plaintexts(paid.order)
    ids = {code.code: code.code_id for code in paid.order.codes}
    c.admin.inventory.VoidCodes(inventory_pb2.CodeOpRequest(
        codes=[inventory_pb2.CodeRef(code_id=ids[sold[2]])]))
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=ids[sold[3]])).status == \
        orders_pb2.REPORT_INVALID_STATUS_REISSUED
    c.admin.inventory.FreezeCodes(inventory_pb2.CodeOpRequest(
        codes=[inventory_pb2.CodeRef(code_id=ids[sold[4]])]))
    in_stock = [code for code in codes if c.admin.redemption.VerifyCode(R.VerifyCodeRequest(
        code=code)).state == common_pb2.CODE_STATE_AVAILABLE]
    assert len(in_stock) == 1  # the other one replaced the invalid code
    rq = uid("rq")
    before_ms = int(time.time() * 1000)

    first = c.pos.redemption.Redeem(R.RedeemRequest(code=sold[0].lower().replace("-", " "),
                                                    request_id=f"{rq}-1"))
    assert first.status == R.REDEEM_STATUS_REDEEMED
    assert first.code_id == ids[sold[0]] and first.request_id == f"{rq}-1"
    assert first.redeemed_by_terminal == "T-01"
    assert before_ms - 5000 <= first.redeemed_at_ms <= int(time.time() * 1000) + 5000
    table = [
        (c.pos, "", "rq-2", R.REDEEM_STATUS_MALFORMED),
        (c.pos, "bad\x01code", "rq-3", R.REDEEM_STATUS_MALFORMED),
        (c.pos, "X" * 129, "rq-4", R.REDEEM_STATUS_MALFORMED),
        (c.pos, sold[1], "rq-1", R.REDEEM_STATUS_REQUEST_ID_CONFLICT),
        (c.pos, uid("NEVER-IMPORTED"), "rq-5", R.REDEEM_STATUS_NOT_FOUND),
        (c.pos, sold[2], "rq-6", R.REDEEM_STATUS_VOID),
        (c.pos, sold[3], "rq-7", R.REDEEM_STATUS_INVALID),
        (c.pos, sold[4], "rq-8", R.REDEEM_STATUS_FROZEN),
        (c.pos2, sold[0], "rq-9", R.REDEEM_STATUS_ALREADY_REDEEMED),
        (c.pos, in_stock[0], "rq-10", R.REDEEM_STATUS_NOT_FOUND),  # never sold: as unknown
    ]
    for client, code, request_id, expected in table:
        request_id = f"{rq}-{request_id.removeprefix('rq-')}"
        reply = client.redemption.Redeem(R.RedeemRequest(code=code, request_id=request_id))
        assert reply.status == expected, (request_id, reply)
        assert reply.request_id == request_id
    already = c.pos2.redemption.Redeem(R.RedeemRequest(code=sold[0], request_id=f"{rq}-11"))
    assert already.status == R.REDEEM_STATUS_ALREADY_REDEEMED
    assert (already.redeemed_at_ms, already.redeemed_by_terminal) == (first.redeemed_at_ms,
                                                                      "T-01")
    assert already.code_id == first.code_id
    # the request id belongs to the terminal: T-02 may use rq-1 for its own code
    own = c.pos2.redemption.Redeem(R.RedeemRequest(code=sold[1], request_id=f"{rq}-1"))
    assert own.status == R.REDEEM_STATUS_REDEEMED and own.redeemed_by_terminal == "T-02"
    stock = counts(c.admin.stock(sku_id))
    # FROZEN: the one frozen above, and the one in stock presented at the till (a leak)
    assert (stock["REDEEMED"], stock["VOID"], stock["FROZEN"], stock["INVALID"]) == (2, 1, 2, 1)


def test_redeem_retry_with_the_same_request_id_gets_the_first_answer(server, c, keys):
    sku_id = uid("red-retry")
    stocked_sku(c.admin, sku_id, 1)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    request = R.RedeemRequest(code=code, request_id=uid("till"))
    first = c.pos.redemption.Redeem(request)
    assert first.status == R.REDEEM_STATUS_REDEEMED
    for _ in range(4):  # retried over new connections, whichever worker answers
        retry = server.client(keys["pos"], fresh=True).redemption.Redeem(request)
        assert retry == first
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 1


def test_redeem_after_valid_until_is_expired(c):
    sku_id = uid("red-expired")
    create_sku(c.admin, sku_id)
    valid_until_ms = int(time.time() * 1000) + 2500
    import_codes(c.admin, sku_id, new_codes(1), valid_until_ms=valid_until_ms)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    time.sleep(max(0.0, (valid_until_ms - time.time() * 1000) / 1000) + 0.3)
    reply = c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("exp")))
    assert reply.status == R.REDEEM_STATUS_EXPIRED
    assert counts(c.admin.stock(sku_id))["SOLD"] == 1


def test_redeem_batch_one_result_per_item_in_order(c):
    sku_id = uid("red-batch")
    stocked_sku(c.admin, sku_id, 4)
    sold = plaintexts(buy(c.web, sku_id, 3).order)
    b = uid("b")
    items = [(sold[0], f"{b}-1"), (uid("NOPE"), f"{b}-2"), ("", f"{b}-3"), (sold[1], f"{b}-4"),
             (sold[0], f"{b}-5"), (sold[2], f"{b}-4")]
    reply = c.pos.redemption.RedeemBatch(R.RedeemBatchRequest(items=[
        R.RedeemRequest(code=code, request_id=request_id) for code, request_id in items]))
    assert [(result.status, result.request_id) for result in reply.results] == [
        (R.REDEEM_STATUS_REDEEMED, f"{b}-1"), (R.REDEEM_STATUS_NOT_FOUND, f"{b}-2"),
        (R.REDEEM_STATUS_MALFORMED, f"{b}-3"), (R.REDEEM_STATUS_REDEEMED, f"{b}-4"),
        (R.REDEEM_STATUS_ALREADY_REDEEMED, f"{b}-5"),
        (R.REDEEM_STATUS_REQUEST_ID_CONFLICT, f"{b}-4")]
    assert all(result.redeemed_by_terminal == "T-01" for result in reply.results
               if result.status == R.REDEEM_STATUS_REDEEMED)
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 2


def test_redeem_stream_answers_in_order_with_request_ids(c):
    sku_id = uid("red-stream")
    stocked_sku(c.admin, sku_id, 310)
    sold = plaintexts(buy(c.web, sku_id, 300).order)  # more than the server reads ahead
    prefix = uid("s")
    requests = [R.RedeemRequest(code=code, request_id=f"{prefix}-{index}")
                for index, code in enumerate(sold)]
    requests += [R.RedeemRequest(code=sold[0], request_id=f"{prefix}-dup"),
                 R.RedeemRequest(code=uid("NOPE"), request_id=f"{prefix}-missing"),
                 R.RedeemRequest(code=sold[1], request_id=f"{prefix}-1")]  # a retry
    replies = list(c.pos.redemption.RedeemStream(iter(requests)))
    assert [reply.request_id for reply in replies] == [request.request_id
                                                       for request in requests]
    assert [reply.status for reply in replies] == [R.REDEEM_STATUS_REDEEMED] * 300 + [
        R.REDEEM_STATUS_ALREADY_REDEEMED, R.REDEEM_STATUS_NOT_FOUND, R.REDEEM_STATUS_REDEEMED]
    assert replies[-1] == replies[1]
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 300


def test_verify_code_shows_state_without_redeeming_or_revealing(c):
    sku_id = uid("red-verify")
    codes = stocked_sku(c.admin, sku_id, 2)
    paid = buy(c.web, sku_id, 1)
    code = paid.order.codes[0]
    for client in (c.pos, c.admin):
        reply = client.redemption.VerifyCode(R.VerifyCodeRequest(code=code.code.lower()))
        assert reply.status == R.VERIFY_STATUS_FOUND
        assert (reply.state, reply.sku_id, reply.code_id) == (common_pb2.CODE_STATE_SOLD,
                                                              sku_id, code.code_id)
        assert reply.masked_code == code.masked_code and reply.redeemed_at_ms == 0
        assert_no_plaintext(reply.SerializeToString(), codes, "a VerifyCode reply")
    redeemed = c.pos2.redemption.Redeem(R.RedeemRequest(code=code.code, request_id=uid("v")))
    after = c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code.code))
    assert after.state == common_pb2.CODE_STATE_REDEEMED
    assert (after.redeemed_at_ms, after.redeemed_by_terminal) == (redeemed.redeemed_at_ms,
                                                                  "T-02")
    assert c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code="")).status == \
        R.VERIFY_STATUS_MALFORMED
    assert c.pos.redemption.VerifyCode(R.VerifyCodeRequest(code=uid("NOPE"))).status == \
        R.VERIFY_STATUS_NOT_FOUND
    assert counts(c.admin.stock(sku_id))["REDEEMED"] == 1  # verifying never redeemed


# -- identity comes from the key ------------------------------------------------------------------

def _with_unknown_field(message, number: int, text: str) -> bytes:
    """`message` serialised plus a string field the schema does not have (a client claiming
    something about itself that the request has no place for)."""
    data = text.encode()
    return message.SerializeToString() + bytes([(number << 3) | 2, len(data)]) + data


def test_a_pos_key_redeems_as_its_own_terminal_whatever_the_request_says(server, c, keys):
    sku_id = uid("id-terminal")
    stocked_sku(c.admin, sku_id, 2)
    code = buy(c.web, sku_id, 1).order.codes[0].code
    redeem = server.channel().unary_unary("/kamicore.v1.Redemption/Redeem",
                                          request_serializer=None,
                                          response_deserializer=R.RedeemResponse.FromString)
    forged = _with_unknown_field(R.RedeemRequest(code=code, request_id=uid("forged")), 6,
                                 "T-99")
    reply = redeem(forged, metadata=[("authorization", f"Bearer {keys['pos']}"),
                                     ("x-terminal", "T-99"), ("terminal", "T-99")], timeout=30)
    assert reply.status == R.REDEEM_STATUS_REDEEMED
    assert reply.redeemed_by_terminal == "T-01"
    verified = c.admin.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
    assert verified.redeemed_by_terminal == "T-01"


# -- racing across both workers -------------------------------------------------------------------

def test_racing_buyers_and_terminals_across_both_workers(server, keys, c):
    """One account racing itself past its purchase limit, and two terminals racing for one
    code, over connections spread on both workers."""
    limited = uid("race-limit")
    stocked_sku(c.admin, limited, 20, limit=3)
    contested = uid("race-code")
    stocked_sku(c.admin, contested, 1)
    code = buy(c.web, contested, 1).order.codes[0].code
    shop = [("authorization", f"Bearer {keys['web']}")]
    tills = [[("authorization", f"Bearer {keys['pos']}")],
             [("authorization", f"Bearer {keys['pos2']}")]]

    async def race():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(6)]
        try:
            orders = asyncio.gather(*(orders_pb2_grpc.OrdersStub(channels[i % 6]).CreateOrder(
                order_request(f"{limited}-{i}", limited, 1, account="greedy"), metadata=shop,
                timeout=60) for i in range(20)))
            redemptions = asyncio.gather(*(redemption_pb2_grpc.RedemptionStub(
                channels[i % 6]).Redeem(R.RedeemRequest(code=code, request_id=f"race-{i}"),
                                        metadata=tills[i % 2], timeout=60) for i in range(20)))
            return await orders, await redemptions
        finally:
            for channel in channels:
                await channel.close()

    orders, redemptions = asyncio.run(race())
    assert sorted(reply.status for reply in orders) == [CREATED] * 3 + [
        orders_pb2.CREATE_ORDER_STATUS_LIMIT_EXCEEDED] * 17
    assert counts(c.admin.stock(limited))["RESERVED"] == 3
    winners = [reply for reply in redemptions if reply.status == R.REDEEM_STATUS_REDEEMED]
    assert len(winners) == 1
    assert all(reply.status == R.REDEEM_STATUS_ALREADY_REDEEMED
               and reply.redeemed_by_terminal == winners[0].redeemed_by_terminal
               and reply.redeemed_at_ms == winners[0].redeemed_at_ms
               for reply in redemptions if reply is not winners[0])
    assert counts(c.admin.stock(contested))["REDEEMED"] == 1
