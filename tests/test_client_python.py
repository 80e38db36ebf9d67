"""The Python client (clients/python, installed as kamicore-client) against the real server of
the end-to-end tests: every call as a partner makes it, keys and deadlines added by the client,
and retries after a lost reply that must not act twice (tests/drop_proxy.py loses it)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from kamicore_client import AsyncClient, Client
from kamicore_client.v1 import common_pb2, inventory_pb2, orders_pb2, redemption_pb2

from .drop_proxy import DropReplyProxy
from .e2e_support import uid
from .server_harness import buy, new_codes, stocked_sku


@pytest.fixture
def proxy(server):
    with DropReplyProxy(server.port) as running:
        yield running


def sellable(c, sku_id: str) -> int:
    return c.admin.stock(sku_id).sellable


def order_request(sku_id: str, quantity: int = 1, key: str = "") -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        idempotency_key=key, buyer=orders_pb2.Buyer(account_id=uid("buyer")),
        lines=[orders_pb2.OrderLine(sku_id=sku_id, quantity=quantity)])


def payment(order: orders_pb2.Order, reference: str) -> orders_pb2.ConfirmPaymentRequest:
    return orders_pb2.ConfirmPaymentRequest(
        order_id=order.order_id, payment_reference=reference,
        amount=common_pb2.Money(currency=order.total.currency,
                                amount_micros=order.total.amount_micros))


def test_an_order_is_bought_and_redeemed_through_the_client(server, keys, c):
    sku_id = uid("py-buy")
    stocked_sku(c.admin, sku_id, 2)
    with Client(server.target, keys["web"]) as shop, Client(server.target, keys["pos"]) as till:
        request = order_request(sku_id)
        created = shop.orders.create_order(request)
        assert created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED
        assert request.idempotency_key == ""  # the key was generated on a copy
        assert created.order.order_id.startswith("storefront:web/")
        paid = shop.orders.confirm_payment(payment(created.order, uid("pay")))
        assert paid.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
        redeemed = till.redemption.redeem(redemption_pb2.RedeemRequest(
            code=paid.order.codes[0].code))
        assert redeemed.status == redemption_pb2.REDEEM_STATUS_REDEEMED
        assert len(redeemed.request_id) == 32  # generated, echoed
    assert sellable(c, sku_id) == 1


def test_a_create_order_whose_reply_was_lost_is_retried_and_orders_once(proxy, keys, c):
    sku_id = uid("py-lost-order")
    stocked_sku(c.admin, sku_id, 3)
    with Client(proxy.address, keys["web"]) as shop:
        proxy.arm("close")
        created = shop.orders.create_order(order_request(sku_id))
    assert proxy.dropped == 1
    assert created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED
    assert sellable(c, sku_id) == 2, "the retry reserved a second order"


def test_a_redemption_whose_reply_timed_out_is_retried_and_answers_redeemed(proxy, keys, c):
    sku_id = uid("py-lost-redeem")
    stocked_sku(c.admin, sku_id, 1)
    code = buy(c.web, sku_id).order.codes[0].code
    with Client(proxy.address, keys["pos"]) as till:
        proxy.arm("swallow")  # the reply never comes: DEADLINE_EXCEEDED, then the retry
        redeemed = till.redemption.redeem(redemption_pb2.RedeemRequest(code=code), timeout=2.0)
    assert proxy.dropped == 1
    assert redeemed.status == redemption_pb2.REDEEM_STATUS_REDEEMED, redeemed


def test_a_payment_whose_reply_was_lost_delivers_the_same_codes_once(proxy, keys, c):
    sku_id = uid("py-lost-pay")
    stocked_sku(c.admin, sku_id, 2)
    with Client(proxy.address, keys["web"]) as shop:
        order = shop.orders.create_order(order_request(sku_id)).order
        proxy.arm("close")
        paid = shop.orders.confirm_payment(payment(order, uid("pay")))
        assert proxy.dropped == 1
        assert paid.status == orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
        again = shop.orders.get_delivery(orders_pb2.GetDeliveryRequest(order_id=order.order_id))
    assert [code.code for code in again.order.codes] == [code.code for code in paid.order.codes]
    assert sellable(c, sku_id) == 1


def test_a_call_without_a_key_is_not_retried(proxy, keys, c):
    sku_id = uid("py-no-retry")
    stocked_sku(c.admin, sku_id, 1)
    with Client(proxy.address, keys["web"]) as shop:
        order = shop.orders.create_order(order_request(sku_id)).order
        proxy.arm("close")
        with pytest.raises(grpc.RpcError) as caught:
            shop.orders.cancel_order(orders_pb2.CancelOrderRequest(order_id=order.order_id))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    # the server did cancel it: the caller decides whether to ask again
    found = c.web.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order.order_id))
    assert found.order.state == orders_pb2.ORDER_STATE_CANCELLED


def test_a_payment_without_its_reference_is_refused_not_invented(server, keys, c):
    sku_id = uid("py-no-ref")
    stocked_sku(c.admin, sku_id, 1)
    with Client(server.target, keys["web"]) as shop:
        order = shop.orders.create_order(order_request(sku_id)).order
        with pytest.raises(grpc.RpcError) as caught:
            shop.orders.confirm_payment(payment(order, ""))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "payment_reference" in caught.value.details()


def test_a_wrong_key_is_refused(server):
    with Client(server.target, "kc_not_a_key") as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.orders.get_order(orders_pb2.GetOrderRequest(order_id="x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(ValueError, match="api_key"):
        Client(server.target, "")


def test_the_import_helper_streams_codes_in_chunks_and_reports_progress(server, keys, c):
    sku_id = uid("py-import")
    stocked_sku(c.admin, sku_id, 0)
    codes = new_codes(2500)
    seen = []
    header = inventory_pb2.ImportHeader(sku_id=sku_id, batch_id=uid("batch"),
                                        unit_cost_micros=1_000_000)
    with Client(server.target, keys["admin"]) as admin:
        reply = admin.import_codes(header, iter(codes), chunk_codes=1000, progress=seen.append)
        again = admin.import_codes(header, codes[:10])
    assert seen == [1000, 2000, 2500]
    assert (reply.status, reply.imported, reply.rows_processed) == (
        inventory_pb2.IMPORT_STATUS_OK, 2500, 2500)
    assert (again.imported, again.duplicates) == (0, 10)
    assert sellable(c, sku_id) == 2500


def test_the_async_client_buys_imports_and_redeems_on_a_stream(server, proxy, keys, c):
    sku_id = uid("py-async")
    stocked_sku(c.admin, sku_id, 0)
    codes = new_codes(3)

    async def scenario():
        async def lines():
            for code in codes:
                yield code

        seen = []
        header = inventory_pb2.ImportHeader(sku_id=sku_id, batch_id=uid("batch"))
        async with AsyncClient(server.target, keys["admin"]) as admin:
            imported = await admin.import_codes(header, lines(), chunk_codes=2,
                                                progress=seen.append)
        async with AsyncClient(proxy.address, keys["web"]) as shop:
            proxy.arm("close")
            created = await shop.orders.create_order(order_request(sku_id, 2))
            paid = await shop.orders.confirm_payment(payment(created.order, uid("pay")))
        async with AsyncClient(server.target, keys["pos"]) as till:
            answers = [answer async for answer in till.redemption.redeem_stream(
                [redemption_pb2.RedeemRequest(code=code.code) for code in paid.order.codes])]
        return imported, seen, created, answers

    imported, seen, created, answers = asyncio.run(scenario())
    assert (imported.imported, seen) == (3, [2, 3])
    assert proxy.dropped == 1 and created.status == orders_pb2.CREATE_ORDER_STATUS_CREATED
    assert [answer.status for answer in answers] == [redemption_pb2.REDEEM_STATUS_REDEEMED] * 2
    assert all(len(answer.request_id) == 32 for answer in answers)
    assert sellable(c, sku_id) == 1, "the retried order reserved twice"
