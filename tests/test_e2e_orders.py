"""The Orders service end to end, against the shared `kamicore serve` (tests/conftest.py):
orders created, paid, cancelled, looked up and delivered, invalid codes reported, retries, holds
that lapse, and 200 buyers for 50 codes."""

from __future__ import annotations

import asyncio
import time

import grpc
from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, orders_pb2_grpc

from .e2e_support import (
    CREATED,
    FOUND,
    NOT_FOUND,
    PAID,
    O,
    R,
    assert_no_plaintext,
    hold_expiry_wait_seconds,
    plaintexts,
    uid,
    wait_until,
)
from .server_harness import (
    CURRENCY,
    PRICE_MICROS,
    Client,
    buy,
    counts,
    create_sku,
    order_request,
    pay_request,
    stocked_sku,
)

# -- orders: CreateOrder --------------------------------------------------------------------------

def test_create_order_reserves_masked_codes_at_the_channel_price(c):
    sku_id = uid("ord-create")
    codes = stocked_sku(c.admin, sku_id, 4)
    before_ms = int(time.time() * 1000)
    reply = c.web.orders.CreateOrder(order_request(uid("create"), sku_id, 3, account="amy"))
    assert reply.status == CREATED
    order = reply.order
    assert order.order_id and order.state == orders_pb2.ORDER_STATE_RESERVED
    assert order.channel == "web" and order.buyer.account_id == "amy"
    assert order.total == common_pb2.Money(currency=CURRENCY,
                                           amount_micros=3 * PRICE_MICROS["web"])
    assert [(line.sku_id, line.quantity) for line in order.lines] == [(sku_id, 3)]
    assert before_ms + 890_000 <= order.hold_until_ms <= before_ms + 960_000  # 0 means 900 s
    assert len(order.codes) == 3 and len({code.code_id for code in order.codes}) == 3
    assert all(code.code == "" and code.masked_code.startswith("*") for code in order.codes)
    assert all(code.state == common_pb2.CODE_STATE_RESERVED for code in order.codes)
    assert_no_plaintext(reply.SerializeToString(), codes, "the CreateOrder reply")
    stock = c.admin.stock(sku_id)
    assert counts(stock)["RESERVED"] == 3 and stock.sellable == 1
    partner = c.partner.orders.CreateOrder(order_request(uid("create"), sku_id, 1))
    assert partner.status == CREATED
    assert partner.order.channel == "partner"
    assert partner.order.total.amount_micros == PRICE_MICROS["partner"]


def test_create_order_each_refusal_reserves_nothing(c):
    sku_id = uid("ord-refuse")
    stocked_sku(c.admin, sku_id, 5, limit=2)
    topup = uid("ord-topup")
    create_sku(c.admin, topup, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    partner_only = uid("ord-partner-only")
    stocked_sku(c.admin, partner_only, 2, channels=("partner",))
    key = uid("refuse")
    first = c.web.orders.CreateOrder(order_request(key, sku_id, 2, account="bob"))
    assert first.status == CREATED
    before = {sku: c.admin.stock(sku) for sku in (sku_id, partner_only)}
    table = [
        (order_request(key, sku_id, 1, account="bob"), O.CREATE_ORDER_STATUS_IDEMPOTENCY_CONFLICT),
        (order_request(uid("r"), uid("no-such-sku")), O.CREATE_ORDER_STATUS_SKU_NOT_FOUND),
        # a top-up SKU no supplier serves
        (_with_recipient(order_request(uid("r"), topup)),
         O.CREATE_ORDER_STATUS_DELIVERY_NOT_SUPPORTED),
        (order_request(uid("r"), partner_only), O.CREATE_ORDER_STATUS_NOT_SOLD_ON_CHANNEL),
        (order_request(uid("r"), sku_id, 1, account="bob"), O.CREATE_ORDER_STATUS_LIMIT_EXCEEDED),
        (order_request(uid("r"), sku_id, 3, account="carol"),
         O.CREATE_ORDER_STATUS_LIMIT_EXCEEDED),
        # every line or none: the first line would be fine, the second is refused
        (order_request(uid("r"), sku_id, account="dave", lines=[
            O.OrderLine(sku_id=sku_id, quantity=1),
            O.OrderLine(sku_id=partner_only, quantity=1)]),
         O.CREATE_ORDER_STATUS_NOT_SOLD_ON_CHANNEL),
    ]
    for request, expected in table:
        reply = c.web.orders.CreateOrder(request)
        assert reply.status == expected, (request, reply)
        assert not reply.HasField("order")
        assert {sku: c.admin.stock(sku) for sku in before} == before
    # partner_only holds 2 codes: an order of 3 is short, and so are two lines of 1 and 2;
    # a first line that could be filled is not reserved either
    short = c.partner.orders.CreateOrder(order_request(uid("r"), partner_only, 3))
    assert short.status == O.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK
    for lines in ([O.OrderLine(sku_id=partner_only, quantity=1),
                   O.OrderLine(sku_id=partner_only, quantity=2)],
                  [O.OrderLine(sku_id=sku_id, quantity=1),
                   O.OrderLine(sku_id=partner_only, quantity=3)]):
        reply = c.partner.orders.CreateOrder(order_request(uid("r"), "", lines=lines))
        assert reply.status == O.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK
        assert not reply.HasField("order")
    assert {sku: c.admin.stock(sku) for sku in before} == before
    # the limit counts open orders: cancelling gives the units back
    cancel = c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(order_id=first.order.order_id))
    assert cancel.status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    again = c.web.orders.CreateOrder(order_request(uid("r"), sku_id, 2, account="bob"))
    assert again.status == CREATED


# -- orders: payment, cancel, lookups -------------------------------------------------------------

def test_confirm_payment_paid_retry_already_paid_and_amount_mismatch(c):
    sku_id = uid("ord-pay")
    codes = stocked_sku(c.admin, sku_id, 4)
    created = c.web.orders.CreateOrder(order_request(uid("pay"), sku_id, 2)).order
    wrong_amount = c.web.orders.ConfirmPayment(pay_request(created, "ref-1",
                                                           created.total.amount_micros - 1))
    assert wrong_amount.status == orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH
    wrong_currency = pay_request(created, "ref-1")
    wrong_currency.amount.currency = "USD"
    assert c.web.orders.ConfirmPayment(wrong_currency).status == \
        orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH
    assert c.web.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=created.order_id)).order \
        .state == orders_pb2.ORDER_STATE_RESERVED  # nothing changed
    assert counts(c.admin.stock(sku_id))["SOLD"] == 0

    paid = c.web.orders.ConfirmPayment(pay_request(created, "ref-1"))
    assert paid.status == PAID and not paid.late
    assert paid.order.state == orders_pb2.ORDER_STATE_PAID
    assert paid.order.payment_reference == "ref-1"
    delivered = plaintexts(paid.order)
    assert len(delivered) == 2 and set(delivered) <= set(codes)
    assert all(code.state == common_pb2.CODE_STATE_SOLD for code in paid.order.codes)
    assert [code.code_id for code in paid.order.codes] == [code.code_id
                                                           for code in created.codes]
    retry = c.web_again.orders.ConfirmPayment(pay_request(created, "ref-1"))  # same channel
    assert retry.status == PAID and plaintexts(retry.order) == delivered
    other = c.web.orders.ConfirmPayment(pay_request(created, "ref-2"))
    assert other.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ALREADY_PAID
    assert_no_plaintext(other.SerializeToString(), codes, "an ALREADY_PAID reply")
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["AVAILABLE"], stock["RESERVED"]) == (2, 2, 0)
    unknown = c.web.orders.ConfirmPayment(orders_pb2.ConfirmPaymentRequest(
        order_id=f"storefront:web/{uid('nope')}", payment_reference="ref-x",
        amount=created.total))
    assert unknown.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND


def test_cancel_order_statuses(c):
    sku_id = uid("ord-cancel")
    stocked_sku(c.admin, sku_id, 3)
    open_order = c.web.orders.CreateOrder(order_request(uid("cancel"), sku_id, 2)).order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    request = orders_pb2.CancelOrderRequest(order_id=open_order.order_id)
    assert c.web.orders.CancelOrder(request).status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    stock = c.admin.stock(sku_id)
    assert counts(stock)["RESERVED"] == 0 and stock.sellable == 3
    assert c.web.orders.CancelOrder(request).status == orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
    looked_up = c.web.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=open_order.order_id))
    assert looked_up.order.state == orders_pb2.ORDER_STATE_CANCELLED
    paid = buy(c.web, sku_id, 1)
    assert c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=paid.order.order_id)).status == orders_pb2.CANCEL_ORDER_STATUS_ALREADY_PAID
    assert counts(c.admin.stock(sku_id))["SOLD"] == 1
    assert c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=f"storefront:web/{uid('nope')}")).status == \
        orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND


def test_get_order_is_masked_everywhere_for_owner_and_admin(c):
    sku_id = uid("ord-get")
    codes = stocked_sku(c.admin, sku_id, 3)
    paid = buy(c.web, sku_id, 2)
    for client in (c.web, c.web_again, c.admin):
        reply = client.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=paid.order.order_id))
        assert reply.status == FOUND
        assert reply.order.state == orders_pb2.ORDER_STATE_PAID
        assert [code.code_id for code in reply.order.codes] == \
            [code.code_id for code in paid.order.codes]
        for code, delivered in zip(reply.order.codes, paid.order.codes, strict=True):
            assert code.code == ""
            assert code.masked_code == delivered.masked_code
            assert code.masked_code.endswith(delivered.code[-4:])
            assert code.masked_code.count("*") >= len(delivered.code) - 4
        assert_no_plaintext(reply.SerializeToString(), codes, "a GetOrder reply")
        assert_no_plaintext(str(reply), codes, "a GetOrder reply")
    missing = c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=f"storefront:web/{uid('nope')}"))
    assert missing.status == NOT_FOUND and not missing.HasField("order")


def test_get_delivery_owner_only_after_payment_and_every_reveal_is_audited(server, c):
    sku_id = uid("ord-delivery")
    stocked_sku(c.admin, sku_id, 3)
    created = c.web.orders.CreateOrder(order_request(uid("deliver"), sku_id, 2)).order
    request = orders_pb2.GetDeliveryRequest(order_id=created.order_id)
    unpaid = c.web.orders.GetDelivery(request)
    assert unpaid.status == orders_pb2.ORDER_LOOKUP_STATUS_NOT_PAID
    assert not unpaid.HasField("order")
    paid = c.web.orders.ConfirmPayment(pay_request(created))
    assert paid.status == PAID
    events = [server.audit_events()]
    for client in (c.web, c.web_again):  # any key of the owning channel
        delivery = client.orders.GetDelivery(request)
        assert delivery.status == FOUND
        assert plaintexts(delivery.order) == plaintexts(paid.order)
        assert all(delivery.order.codes[i].code for i in range(2))
        events.append(server.audit_events())
    # one reveal event per code shown (the sweeper may add others meanwhile)
    assert events[1] >= events[0] + 2 and events[2] >= events[1] + 2
    for stranger in (c.app, c.partner):
        other = stranger.orders.GetDelivery(request)
        assert other.status == NOT_FOUND and not other.HasField("order")


def test_report_invalid_code_reissues_a_working_replacement(c):
    sku_id = uid("ord-invalid")
    codes = stocked_sku(c.admin, sku_id, 3)
    paid = buy(c.web, sku_id, 1)
    bad = paid.order.codes[0]
    request = orders_pb2.ReportInvalidCodeRequest(order_id=paid.order.order_id,
                                                  code_id=bad.code_id, reason="customer: used")
    reply = c.web.orders.ReportInvalidCode(request)
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    replacement = reply.replacement
    assert replacement.code in codes and replacement.code != bad.code
    assert replacement.code_id != bad.code_id
    assert replacement.state == common_pb2.CODE_STATE_SOLD
    retry = c.web.orders.ReportInvalidCode(request)
    assert retry.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    assert retry.replacement.code_id == replacement.code_id
    stock = counts(c.admin.stock(sku_id))
    assert (stock["INVALID"], stock["SOLD"], stock["AVAILABLE"]) == (1, 1, 1)
    delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=paid.order.order_id))
    states = {code.code_id: code.state for code in delivery.order.codes}
    assert states == {bad.code_id: common_pb2.CODE_STATE_INVALID,
                      replacement.code_id: common_pb2.CODE_STATE_SOLD}
    redeemed = c.pos.redemption.Redeem(R.RedeemRequest(code=replacement.code,
                                                       request_id=uid("inv")))
    assert redeemed.status == R.REDEEM_STATUS_REDEEMED  # the replacement works
    refused = c.pos.redemption.Redeem(R.RedeemRequest(code=bad.code, request_id=uid("inv")))
    assert refused.status == R.REDEEM_STATUS_INVALID
    used = c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=replacement.code_id))
    assert used.status == orders_pb2.REPORT_INVALID_STATUS_NOT_SOLD
    elsewhere = buy(c.web, sku_id, 1)
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=elsewhere.order.codes[0].code_id)).status == \
        orders_pb2.REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER
    assert c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=f"storefront:web/{uid('nope')}", code_id=bad.code_id)).status == \
        orders_pb2.REPORT_INVALID_STATUS_ORDER_NOT_FOUND


def test_report_invalid_code_without_stock_left_means_no_replacement(c):
    sku_id = uid("ord-noreplace")
    stocked_sku(c.admin, sku_id, 1)
    paid = buy(c.partner, sku_id, 1)
    reply = c.partner.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=paid.order.codes[0].code_id))
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_NO_REPLACEMENT
    assert not reply.HasField("replacement")
    assert counts(c.admin.stock(sku_id))["INVALID"] == 1
    cancel = orders_pb2.CancelOrderRequest(order_id=paid.order.order_id)  # its refund is booked
    assert c.partner.orders.CancelOrder(cancel).status == orders_pb2.CANCEL_ORDER_STATUS_REFUNDED


# -- idempotent retries ---------------------------------------------------------------------------

def test_create_order_retry_returns_the_same_order_and_conflicts_on_changes(server, c, keys):
    sku_id = uid("idem-create")
    stocked_sku(c.admin, sku_id, 6)
    request = order_request(uid("idem"), sku_id, 2, account="erin")
    first = c.web.orders.CreateOrder(request)
    assert first.status == CREATED
    for _ in range(3):
        retry = server.client(keys["web"], fresh=True).orders.CreateOrder(request)
        assert retry.status == CREATED and retry.order == first.order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    other_lines = order_request(request.idempotency_key, sku_id, 3, account="erin")
    other_buyer = order_request(request.idempotency_key, sku_id, 2, account="frank")
    other_hold = order_request(request.idempotency_key, sku_id, 2, account="erin",
                               hold_seconds=60)
    for changed in (other_lines, other_buyer, other_hold):
        reply = c.web.orders.CreateOrder(changed)
        assert reply.status == orders_pb2.CREATE_ORDER_STATUS_IDEMPOTENCY_CONFLICT
        assert not reply.HasField("order")
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    paid = c.web.orders.ConfirmPayment(pay_request(first.order))
    again = c.web.orders.CreateOrder(request)  # after payment: still the same order
    assert again.status == CREATED and again.order.order_id == first.order.order_id
    assert [code.code_id for code in again.order.codes] == [code.code_id
                                                            for code in paid.order.codes]


# -- hold expiry and late payment -----------------------------------------------------------------

def _expired(client: Client, order_id: str) -> bool:
    return client.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id)).order.state \
        == orders_pb2.ORDER_STATE_EXPIRED


def test_an_expired_hold_goes_back_to_stock_and_a_late_payment_still_delivers(c):
    sku_id = uid("hold-late")
    codes = stocked_sku(c.admin, sku_id, 2, limit=2)
    created = c.web.orders.CreateOrder(order_request(uid("late"), sku_id, 2, account="gina",
                                                     hold_seconds=1)).order
    assert counts(c.admin.stock(sku_id))["RESERVED"] == 2
    wait_until(lambda: counts(c.admin.stock(sku_id))["AVAILABLE"] == 2,
               hold_expiry_wait_seconds, "the sweeper to return the held codes")
    assert c.admin.stock(sku_id).sellable == 2
    assert _expired(c.web, created.order_id)
    # the units went back to the buyer's purchase limit too
    limit_check = c.web.orders.CreateOrder(order_request(uid("late-limit"), sku_id, 2,
                                                         account="gina", hold_seconds=1))
    assert limit_check.status == CREATED
    wait_until(lambda: counts(c.admin.stock(sku_id))["AVAILABLE"] == 2,
               hold_expiry_wait_seconds, "the second hold to lapse")
    paid = c.web.orders.ConfirmPayment(pay_request(created))
    assert paid.status == PAID and paid.late
    assert len(paid.order.codes) == 2 and set(plaintexts(paid.order)) == set(codes)
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["AVAILABLE"], stock["RESERVED"]) == (2, 0, 0)
    delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=created.order_id))
    assert delivery.status == FOUND and plaintexts(delivery.order) == plaintexts(paid.order)


def test_a_late_payment_after_someone_else_took_the_stock_is_refund_required(c):
    sku_id = uid("hold-refund")
    stocked_sku(c.admin, sku_id, 1)
    first = c.web.orders.CreateOrder(order_request(uid("slow"), sku_id, 1, account="hank",
                                                   hold_seconds=1)).order
    wait_until(lambda: _expired(c.web, first.order_id), hold_expiry_wait_seconds,
               "the hold to lapse")
    second = c.web.orders.CreateOrder(order_request(uid("fast"), sku_id, 1, account="ivy"))
    assert second.status == CREATED
    late = c.web.orders.ConfirmPayment(pay_request(first))
    assert late.status == orders_pb2.CONFIRM_PAYMENT_STATUS_REFUND_REQUIRED
    assert not late.HasField("order")
    assert c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=first.order_id)).status == orders_pb2.ORDER_LOOKUP_STATUS_NOT_PAID
    stock = counts(c.admin.stock(sku_id))
    assert (stock["RESERVED"], stock["SOLD"], stock["AVAILABLE"]) == (1, 0, 0)
    assert c.web.orders.ConfirmPayment(pay_request(second.order)).status == PAID


# -- 200 buyers, 50 codes -------------------------------------------------------------------------

def test_two_hundred_concurrent_buyers_for_fifty_codes_never_oversell(server, keys, c):
    sku_id = uid("rush")
    stocked_sku(c.admin, sku_id, 50)
    metadata = [("authorization", f"Bearer {keys['web']}")]
    buyers = 200

    async def rush():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(4)]
        stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]

        async def retried(method, request):
            """One storefront key: more than its share of a worker's calls in flight are
            refused RESOURCE_EXHAUSTED, and a storefront retries them (both writes are
            idempotent: the order's key, the payment's reference)."""
            while True:
                try:
                    return await method(request, metadata=metadata, timeout=120)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                    await asyncio.sleep(0.05)

        async def buyer(index: int):
            stub = stubs[index % len(stubs)]
            created = await retried(stub.CreateOrder, order_request(
                f"{sku_id}-{index}", sku_id, 1, account=f"buyer-{index}"))
            if created.status != CREATED:
                return created.status, None, None
            paid = await retried(stub.ConfirmPayment, pay_request(created.order))
            return created.status, paid.status, paid.order

        try:
            return await asyncio.gather(*(buyer(index) for index in range(buyers)))
        finally:
            for channel in channels:
                await channel.close()

    results = asyncio.run(rush())
    paid_orders = [order for _, paid, order in results if paid == PAID]
    assert len(paid_orders) == 50
    refused = [created for created, paid, _ in results if paid is None]
    assert refused == [orders_pb2.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK] * 150
    assert all(paid in (PAID, None) for _, paid, _ in results)  # none REFUND_REQUIRED
    code_ids = [code.code_id for order in paid_orders for code in order.codes]
    delivered = [code.code for order in paid_orders for code in order.codes]
    assert len(code_ids) == 50 and len(set(code_ids)) == 50
    assert len(set(delivered)) == 50 and all(delivered)
    stock = c.admin.stock(sku_id)
    assert (counts(stock)["SOLD"], counts(stock)["AVAILABLE"], counts(stock)["RESERVED"]) == (
        50, 0, 0)
    assert stock.sellable == 0
    for order in paid_orders:
        delivery = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=order.order_id))
        assert delivery.status == FOUND and plaintexts(delivery.order) == plaintexts(order)


def _with_recipient(request: O.CreateOrderRequest) -> O.CreateOrderRequest:
    request.recipient = "+8613800138000"
    return request
