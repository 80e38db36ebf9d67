"""What the top-up end-to-end tests and the benchmark share: a kamicore server with its callback
listener, suppliers registered over the API that point at simulated suppliers, top-up orders,
and callbacks signed like a supplier's."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from kamicore.connectors import Result
from kamicore.connectors.signing import Callback, sign, signed_headers
from kamicore.v1 import catalog_pb2, common_pb2, orders_pb2, suppliers_pb2, suppliers_pb2_grpc

from .e2e_support import uid, wait_until
from .server_harness import HOST, Server, create_sku, free_port

ACCOUNT = "+8613800138000"
PROTOCOL = {"grpc": suppliers_pb2.SUPPLIER_PROTOCOL_GRPC,
            "http": suppliers_pb2.SUPPLIER_PROTOCOL_HTTP_JSON}


def topup_server(base, name: str = "topups", workers: int = 2, **settings) -> Server:
    """A server with its callback listener on a free port, a quick dispatcher and follow-ups
    after 1 s (not started)."""
    callback = f"{HOST}:{free_port()}"
    server = Server(base / f"{name}-data", base, name, workers=workers, settings={
        "callback_listen": callback, "dispatcher_interval_seconds": "0.1",
        "topup_follow_up_seconds": "1", **settings})
    server.callback_listen = callback
    return server


def suppliers_stub(server: Server, key: str):
    stub = suppliers_pb2_grpc.SuppliersStub(server.channel())
    metadata = (("authorization", f"Bearer {key}"),)

    class Bound:
        def __getattr__(self, name):
            method = getattr(stub, name)
            return lambda request, **options: method(request, metadata=metadata, timeout=30,
                                                     **options)
    return Bound()


def topup_sku(admin, sku_id: str | None = None) -> str:
    sku_id = sku_id or uid("topup")
    create_sku(admin, sku_id, delivery=catalog_pb2.DELIVERY_KIND_DIRECT_TOPUP)
    return sku_id


def register(server: Server, sku_id: str, simulator, protocol: str = "http",
             timeout_ms: int = 2000, priority: int = 0, supplier_id: str | None = None) -> str:
    """A supplier with one route to `sku_id`, served by `simulator` -> its id."""
    supplier_id = supplier_id or uid("sup")
    address = simulator.grpc_address if protocol == "grpc" else simulator.http_address
    reply = suppliers_stub(server, server.admin_key).RegisterSupplier(
        suppliers_pb2.RegisterSupplierRequest(supplier=suppliers_pb2.Supplier(
            supplier_id=supplier_id, name=supplier_id, protocol=PROTOCOL[protocol],
            address=address, timeout_ms=timeout_ms, signing_secret=simulator.secret,
            enabled=True, routes=[suppliers_pb2.SupplierRoute(
                sku_id=sku_id, product="P-10", priority=priority, enabled=True,
                cost=common_pb2.Money(currency="CNY", amount_micros=45_000_000))])))
    assert reply.status == suppliers_pb2.REGISTER_SUPPLIER_STATUS_REGISTERED, reply
    return supplier_id


def order(client, sku_id: str, key: str | None = None) -> orders_pb2.Order:
    reply = client.orders.CreateOrder(orders_pb2.CreateOrderRequest(
        idempotency_key=key or uid("tu"), buyer=orders_pb2.Buyer(account_id="alice"),
        lines=[orders_pb2.OrderLine(sku_id=sku_id, quantity=1)], recipient=ACCOUNT))
    assert reply.status == orders_pb2.CREATE_ORDER_STATUS_CREATED, reply
    return reply.order


def pay(client, order_: orders_pb2.Order, reference: str | None = None):
    return client.orders.ConfirmPayment(orders_pb2.ConfirmPaymentRequest(
        order_id=order_.order_id, payment_reference=reference or f"pay-{order_.order_id}",
        amount=order_.total))


def get(client, order_id: str) -> orders_pb2.Order:
    reply = client.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id))
    assert reply.status == orders_pb2.ORDER_LOOKUP_STATUS_FOUND
    return reply.order


def wait_state(client, order_id: str, state, timeout: float = 30.0) -> orders_pb2.Order:
    return wait_until(lambda: (lambda found: found if found.topup_state == state else None)(
        get(client, order_id)), timeout, f"order {order_id} in top-up state {state}")


def callback_body(request_id: str, result: str = "SUCCEEDED", reference: str = "cb-ref") -> bytes:
    return Callback(request_id, Result[result], reference, "").document()


def post_callback(server: Server, supplier_id: str, body: bytes, secret: bytes,
                  timestamp_ms: int | None = None) -> tuple[int, str]:
    """An HTTP callback, signed with `secret` -> (HTTP status, the answer's status)."""
    request = urllib.request.Request(
        f"http://{server.callback_listen}/v1/callbacks/{supplier_id}", data=body,
        method="POST", headers={"content-type": "application/json",
                                **signed_headers(secret, body, timestamp_ms)})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())["status"]
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())["status"]


def grpc_callback(server: Server, key: str, supplier_id: str, body: bytes, secret: bytes,
                  timestamp_ms: int):
    return suppliers_stub(server, key).SupplierCallback(suppliers_pb2.SupplierCallbackRequest(
        supplier_id=supplier_id, payload=body, timestamp_ms=timestamp_ms,
        signature=sign(secret, timestamp_ms, body)))
