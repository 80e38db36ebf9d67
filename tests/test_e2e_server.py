"""kamicore's gRPC server end to end, what no one service owns: health, the auth matrix, a
storefront confined to its channel, retries racing over both workers, bad input, SIGTERM with
calls in flight, and metrics and logs free of plaintext codes.

Like tests/test_e2e_<service>.py, these call the one `kamicore serve` that conftest.py starts for
them all (the SIGTERM test runs servers of its own). The metrics test comes last (pytest runs
files in name order): it also checks that nothing before leaked a code."""

from __future__ import annotations

import asyncio
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kamicore import auth
from kamicore.v1 import (
    catalog_pb2,
    common_pb2,
    events_pb2,
    inventory_pb2,
    orders_pb2,
    orders_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
    reports_pb2,
    risk_pb2,
    suppliers_pb2,
    webhooks_pb2,
)

from .e2e_requests import BAD_INPUT, MINIMAL_REQUESTS, ROLE_CLIENTS, call_method
from .e2e_support import (
    CREATED,
    FOUND,
    NOT_FOUND,
    PAID,
    R,
    assert_no_plaintext,
    metric_samples,
    metric_value,
    plaintexts,
    rpc_error,
    uid,
)
from .server_harness import (
    ISSUED_CODES,
    PRICE_MICROS,
    Server,
    buy,
    cli,
    counts,
    order_request,
    pay_request,
    stocked_sku,
)

# -- health ---------------------------------------------------------------------------------------

def test_health_answers_without_a_key_for_every_service(server):
    channel = server.channel(fresh=True)
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "kamicore.v1.Catalog", "kamicore.v1.Inventory", "kamicore.v1.Orders",
                    "kamicore.v1.Redemption"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


# -- the auth matrix ------------------------------------------------------------------------------

def test_every_rpc_of_every_service_has_roles():
    served = {f"/kamicore.v1.{service.name}/{method.name}"
              for module in (catalog_pb2, events_pb2, inventory_pb2, orders_pb2, redemption_pb2,
                             reports_pb2, risk_pb2, suppliers_pb2, webhooks_pb2)
              for service in module.DESCRIPTOR.services_by_name.values()
              for method in service.methods}
    assert served == set(auth.METHOD_ROLES) == set(MINIMAL_REQUESTS)


@pytest.mark.parametrize("caller", [*ROLE_CLIENTS, "no key", "malformed key", "revoked key"])
@pytest.mark.parametrize("method", sorted(auth.METHOD_ROLES))
def test_auth_matrix(method, caller, keys, revoked_keys, matrix_channel):
    if caller in ROLE_CLIENTS:
        code = call_method(matrix_channel, method,
                           [("authorization", f"Bearer {keys[ROLE_CLIENTS[caller]]}")])
        if caller in auth.METHOD_ROLES[method]:  # the minimal request is valid: answered
            assert code == grpc.StatusCode.OK, code
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED
        return
    if caller == "no key":
        attempts = [[], [("authorization", "")], [("authorization", "Bearer ")]]
    elif caller == "malformed key":
        real = keys["admin"]
        attempts = [[("authorization", "Bearer kc_not-a-key")],
                    [("authorization", f"Bearer {real[:-3]}xyz")],  # right id, wrong secret
                    [("authorization", real)],  # no scheme
                    [("authorization", f"Basic {real}")],
                    [("authorization", "Bearer " + "kc_" + "0" * 16 + "_secret")]]
    else:
        attempts = [[("authorization", f"Bearer {key}")] for key in revoked_keys.values()]
    for metadata in attempts:
        assert call_method(matrix_channel, method, metadata) == \
            grpc.StatusCode.UNAUTHENTICATED, metadata


# -- identity comes from the key: a storefront's orders are its channel's only --------------------

def test_a_storefront_cannot_see_or_touch_another_channels_orders(c):
    sku_id = uid("id-channel")
    stocked_sku(c.admin, sku_id, 4, channels=("web", "app", "partner"))
    web_paid = buy(c.web, sku_id, 1)
    web_open = c.web.orders.CreateOrder(order_request(uid("open"), sku_id, 1)).order
    for stranger in (c.app, c.partner):
        for order in (web_paid.order, web_open):
            assert stranger.orders.GetOrder(orders_pb2.GetOrderRequest(
                order_id=order.order_id)).status == NOT_FOUND
            assert stranger.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
                order_id=order.order_id)).status == NOT_FOUND
            assert stranger.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
                order_id=order.order_id, code_id=order.codes[0].code_id)).status == \
                orders_pb2.REPORT_INVALID_STATUS_ORDER_NOT_FOUND
        confirm = stranger.orders.ConfirmPayment(pay_request(web_open, "stolen"))
        assert confirm.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND
        assert not confirm.HasField("order")
        assert stranger.orders.CancelOrder(orders_pb2.CancelOrderRequest(
            order_id=web_open.order_id)).status == orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND
    # the same idempotency key on another channel is another order
    same_key = web_open.order_id.split("/", 1)[1]
    app_order = c.app.orders.CreateOrder(order_request(same_key, sku_id, 1))
    assert app_order.status == CREATED and app_order.order.order_id != web_open.order_id
    assert app_order.order.total.amount_micros == PRICE_MICROS["app"]
    # partners are each their own namespace
    partner_order = buy(c.partner, sku_id, 1).order
    assert partner_order.channel == "partner"
    for stranger in (c.partner2, c.web):
        assert stranger.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=partner_order.order_id)).status == NOT_FOUND
    stock = counts(c.admin.stock(sku_id))
    assert (stock["RESERVED"], stock["SOLD"], stock["AVAILABLE"]) == (2, 2, 0)


def test_a_channel_named_like_a_prefix_of_another_cannot_read_its_orders(server, c):
    """Order ids are '<owner>/<idempotency key>': an owner containing '/' could name another
    owner's orders, so such bindings are refused, and 'web' cannot reach 'webshop' orders."""
    refused = cli(server.data_dir, "keys", "create", "--role", "storefront", "--channel",
                  "web/eu", check=False)
    assert refused.returncode == 2 and "channel: must not contain '/'" in refused.stderr
    sku_id = uid("id-prefix")
    stocked_sku(c.admin, sku_id, 2, channels=("web",))
    sku = c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sku_id)).sku
    sku.prices.add(channel="webshop", price_micros=1_000_000)
    c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(sku=sku))
    shop = server.client(server.create_key("storefront", "webshop")[0])
    shop_paid = buy(shop, sku_id, 1, key="k1")
    assert shop_paid.order.order_id == "storefront:webshop/k1"
    for order_id in (shop_paid.order.order_id, "storefront:web/../webshop/k1"):
        peek = c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(order_id=order_id))
        assert peek.status == NOT_FOUND and not peek.HasField("order")
    collide = c.web.orders.CreateOrder(order_request("shop/k1", sku_id, 1))
    assert collide.order.order_id != shop_paid.order.order_id


# -- concurrent retries across both workers -------------------------------------------------------

def test_concurrent_retries_of_create_and_confirm_happen_once(server, keys, c):
    sku_id = uid("idem-race")
    stocked_sku(c.admin, sku_id, 10)
    request = order_request(uid("race"), sku_id, 3)
    metadata = [("authorization", f"Bearer {keys['web']}")]

    async def race():
        channels = [grpc.aio.insecure_channel(server.target,
                                              options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(4)]
        try:
            stubs = [orders_pb2_grpc.OrdersStub(channel) for channel in channels]
            created = await asyncio.gather(*(stubs[index % 4].CreateOrder(
                request, metadata=metadata, timeout=60) for index in range(12)))
            order = created[0].order
            paid = await asyncio.gather(*(stubs[index % 4].ConfirmPayment(
                pay_request(order, "race-ref"), metadata=metadata, timeout=60)
                for index in range(12)))
            return created, paid
        finally:
            for channel in channels:
                await channel.close()

    created, paid = asyncio.run(race())
    assert {reply.status for reply in created} == {CREATED}
    assert len({tuple(code.code_id for code in reply.order.codes) for reply in created}) == 1
    assert {reply.status for reply in paid} == {PAID}
    assert len({tuple(plaintexts(reply.order)) for reply in paid}) == 1
    stock = counts(c.admin.stock(sku_id))
    assert (stock["SOLD"], stock["RESERVED"], stock["AVAILABLE"]) == (3, 0, 7)


# -- bad input (the table is in tests/e2e_requests.py) --------------------------------------------

def _row_id(row) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


@pytest.mark.parametrize("name, call, expected", BAD_INPUT, ids=[_row_id(row)
                                                                   for row in BAD_INPUT])
def test_bad_input_is_refused_naming_the_field_and_changes_nothing(name, call, expected, c,
                                                                   sentinel):
    def watched():
        return (c.admin.stock(sentinel.sku_id), c.admin.stock(sentinel.usd_sku_id),
                c.admin.catalog.GetSku(catalog_pb2.GetSkuRequest(sku_id=sentinel.sku_id)).sku,
                c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
                    order_id=sentinel.paid.order_id)).order,
                c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
                    order_id=sentinel.held.order_id)).order)
    before = watched()
    if callable(expected):
        assert expected(call(c, sentinel))
    else:
        code, field = expected
        error = rpc_error(call, c, sentinel)
        assert error.code() == code, error.details()
        if field is not None:  # "<field>: <what is wrong>"
            named, _, _ = error.details().partition(":")
            assert field in named, error.details()
        assert_no_plaintext(error.details(), sentinel.codes, "an error message")
    assert watched() == before


# -- SIGTERM with calls in flight -----------------------------------------------------------------

def test_sigterm_drains_in_flight_calls_and_loses_no_acknowledged_write(tmp_path):
    """~100 clients redeem and order without pause; SIGTERM lands mid-stream. Every answer a
    client got must be on disk after a restart; every other call failed UNAVAILABLE or
    CANCELLED; the server exits 0."""
    data_dir = tmp_path / "data"
    first = Server(data_dir, tmp_path, "drain").start()
    acknowledged_redemptions: dict[str, R.RedeemResponse] = {}
    acknowledged_orders: dict[str, orders_pb2.Order] = {}
    failures: list[grpc.StatusCode] = []
    sku_id, stocked, sold_count = "drain", 1200, 600
    try:
        admin = first.client(first.admin_key)
        shop_key = first.create_key("storefront", "web")[0]
        pos_key = first.create_key("pos", "T-01")[0]
        stocked_sku(admin, sku_id, stocked)
        big_order = buy(first.client(shop_key), sku_id, sold_count).order
        sold = plaintexts(big_order)
        # data keys re-wrapped under a new master key: still readable after the restart
        assert admin.inventory.RotateKeys(inventory_pb2.RotateKeysRequest()).rewrapped_batches

        shop_metadata = [("authorization", f"Bearer {shop_key}")]
        pos_metadata = [("authorization", f"Bearer {pos_key}")]
        clients = 100

        async def storm():
            channels = [grpc.aio.insecure_channel(
                first.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(8)]
            to_redeem = iter(sold)
            completed = 0
            enough = asyncio.Event()

            async def client(index: int):
                nonlocal completed
                channel = channels[index % len(channels)]
                orders_stub = orders_pb2_grpc.OrdersStub(channel)
                redemption_stub = redemption_pb2_grpc.RedemptionStub(channel)
                for step in range(200):  # until the server refuses (or stock runs out)
                    code = next(to_redeem, None) if step % 2 == 0 else None
                    try:
                        if code is not None:
                            reply = await redemption_stub.Redeem(R.RedeemRequest(
                                code=code, request_id=f"drain-{code}"), metadata=pos_metadata,
                                timeout=60)
                            acknowledged_redemptions[code] = reply
                        else:
                            key = f"drain-{index}-{step}"
                            reply = await orders_stub.CreateOrder(order_request(
                                key, sku_id, 1, account=f"acct-{index}-{step}"),
                                metadata=shop_metadata, timeout=60)
                            if reply.status != orders_pb2.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK:
                                acknowledged_orders[key] = reply
                    except grpc.RpcError as error:
                        failures.append(error.code())
                        return
                    completed += 1
                    if completed >= 150:
                        enough.set()

            tasks = [asyncio.ensure_future(client(index)) for index in range(clients)]
            await asyncio.wait_for(enough.wait(), 60)
            first.process.send_signal(signal.SIGTERM)  # while ~100 calls are in flight
            await asyncio.gather(*tasks)
            for channel in channels:
                await channel.close()

        asyncio.run(storm())
        exit_code = first.process.wait(30)
        assert exit_code == 0, first.logs()[-3000:]
    finally:
        first.kill()
    assert failures, "the server answered everything: SIGTERM came too late to test a drain"
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, failures
    assert acknowledged_redemptions and acknowledged_orders

    second = Server(data_dir, tmp_path, "drain-restarted").start()
    try:
        admin = second.client(second.admin_key)
        pos = second.client(pos_key)
        shop = second.client(shop_key)
        for code, reply in acknowledged_redemptions.items():
            assert reply.status == R.REDEEM_STATUS_REDEEMED
            verified = pos.redemption.VerifyCode(R.VerifyCodeRequest(code=code))
            assert verified.state == common_pb2.CODE_STATE_REDEEMED
            assert (verified.redeemed_at_ms, verified.redeemed_by_terminal) == (
                reply.redeemed_at_ms, "T-01")
        for reply in acknowledged_orders.values():
            assert reply.status == CREATED
            stored = shop.orders.GetOrder(orders_pb2.GetOrderRequest(
                order_id=reply.order.order_id))
            assert stored.status == FOUND
            assert stored.order.state == orders_pb2.ORDER_STATE_RESERVED
            assert [code.code_id for code in stored.order.codes] == [
                code.code_id for code in reply.order.codes]
        delivery = shop.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
            order_id=big_order.order_id))
        assert delivery.status == FOUND and plaintexts(delivery.order) == sold
        stock = counts(admin.stock(sku_id))
        assert stock["REDEEMED"] >= len(acknowledged_redemptions)
        assert stock["RESERVED"] >= len(acknowledged_orders)
        assert sum(stock.values()) == stocked
        logs = first.logs() + second.logs()
        assert "Traceback" not in logs, logs[-3000:]
        assert_no_plaintext(logs, sold, "the server logs")
    finally:
        assert second.stop() == 0


# -- secrets in free text -------------------------------------------------------------------------

QUOTED_IN_REASONS: set[str] = set()  # codes a test deliberately quoted in a free-text reason


def test_a_code_quoted_in_a_complaint_does_not_reach_the_server_log(server, c):
    sku_id = uid("secret-reason")
    stocked_sku(c.admin, sku_id, 2)
    paid = buy(c.web, sku_id, 1)
    code = paid.order.codes[0]
    QUOTED_IN_REASONS.add(code.code)
    reply = c.web.orders.ReportInvalidCode(orders_pb2.ReportInvalidCodeRequest(
        order_id=paid.order.order_id, code_id=code.code_id,
        reason=f"customer says {code.code} was already used"))
    assert reply.status == orders_pb2.REPORT_INVALID_STATUS_REISSUED
    time.sleep(0.5)  # log lines are written as they happen; give the worker a moment
    assert_no_plaintext(server.logs(), [code.code], "the server logs")


# -- metrics (last: it also checks that nothing before leaked a code) -----------------------------

def test_metrics_count_rpcs_latency_stock_and_redemptions_without_secrets(server, c):
    sku_id = uid("metrics")
    stocked_sku(c.admin, sku_id, 5)
    before = metric_samples(server.metrics())
    paid = buy(c.web, sku_id, 2)
    code = paid.order.codes[0].code
    c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("m")))
    c.pos.redemption.Redeem(R.RedeemRequest(code=code, request_id=uid("m")))
    rpc_error(c.web.catalog.GetSku, catalog_pb2.GetSkuRequest())  # INVALID_ARGUMENT
    rpc_error(server.client(None).catalog.GetSku, catalog_pb2.GetSkuRequest(sku_id=sku_id))
    rpc_error(c.pos.catalog.GetSku, catalog_pb2.GetSkuRequest(sku_id=sku_id))
    text = server.metrics()
    after = metric_samples(text)

    def delta(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    create_order = "/kamicore.v1.Orders/CreateOrder"
    get_sku = "/kamicore.v1.Catalog/GetSku"
    # counted before the reply leaves the worker, so exact
    assert delta("kamicore_rpcs_total", method=create_order, code="OK") == 1
    assert delta("kamicore_rpcs_total", method="/kamicore.v1.Orders/ConfirmPayment",
                 code="OK") == 1
    assert delta("kamicore_rpcs_total", method="/kamicore.v1.Redemption/Redeem",
                 code="OK") == 2
    assert delta("kamicore_rpcs_total", method=get_sku, code="INVALID_ARGUMENT") == 1
    assert delta("kamicore_rpcs_total", method=get_sku, code="UNAUTHENTICATED") == 1
    assert delta("kamicore_rpcs_total", method=get_sku, code="PERMISSION_DENIED") == 1
    assert delta("kamicore_rpc_latency_seconds_count", method=create_order) == 1
    assert delta("kamicore_rpc_latency_seconds_sum", method=create_order) > 0
    assert metric_value(after, "kamicore_rpc_latency_seconds_bucket", method=create_order,
                  le="+Inf") == metric_value(after, "kamicore_rpc_latency_seconds_count",
                                       method=create_order)
    assert delta("kamicore_redemptions_total", status="REDEEM_STATUS_REDEEMED") == 1
    assert delta("kamicore_redemptions_total", status="REDEEM_STATUS_ALREADY_REDEEMED") == 1
    stock = counts(c.admin.stock(sku_id))
    assert {state: metric_value(after, "kamicore_stock_codes", sku=sku_id, state=state)
            for state in stock} == stock
    assert stock["SOLD"] == 1 and stock["REDEEMED"] == 1
    assert_no_plaintext(text, ISSUED_CODES, "the metrics")
    logs = server.logs()
    assert_no_plaintext(logs, ISSUED_CODES - QUOTED_IN_REASONS, "the server logs")
    assert "Traceback" not in logs and "internal error" not in logs, logs[-3000:]
