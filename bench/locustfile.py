"""Locust scenarios for kamicore over gRPC: storefront, POS, partner and a background admin.

    locust -f bench/locustfile.py --headless -u 20 -r 5 -t 60s --csv bench/results/tmp/locust
    locust -f bench/locustfile.py            # then open http://127.0.0.1:8089 (web UI)

Every call is reported to Locust's request event (request type "grpc", name "Service/Method",
response time in ms, reply size): a gRPC error, or a business status that the scenario did not
expect (e.g. CREATE_ORDER_STATUS_INSUFFICIENT_STOCK), counts as a failure named after it.

Environment (the defaults in brackets):
  KAMICORE_TARGET            host:port of kamicore [127.0.0.1:50051]; the web UI's host field
                             (or --host) overrides it
  KAMICORE_STOREFRONT_KEY    a storefront key (its channel's prices apply) [required for
                             storefront users]
  KAMICORE_POS_KEY           a pos key (bound to a terminal) [required for POS users]
  KAMICORE_PARTNER_KEY       a partner key [required for partner users]
  KAMICORE_ADMIN_KEY         an admin key [required for the admin user]
  KAMICORE_SKU               the SKU every scenario buys, and the admin imports [bench-gift-50]
  KAMICORE_POOL_FILE         SOLD codes, one a line, that POS users redeem before (and besides)
                             the codes storefront users buy in this process [none]
  KAMICORE_IMPORT_BATCH      the admin's batch id prefix [locust-<pid>]
  LOCUST_WEIGHT_STOREFRONT, LOCUST_WEIGHT_POS, LOCUST_WEIGHT_PARTNER
                             relative numbers of users [10, 10, 1]
  LOCUST_ADMIN_USERS         admin users, spawned first regardless of weights [1]
  LOCUST_WAIT_STOREFRONT, LOCUST_WAIT_POS, LOCUST_WAIT_PARTNER, LOCUST_WAIT_ADMIN
                             "MIN,MAX" seconds between a user's tasks [0.5,2 · 0.2,1 · 2,5 · 5,10]
  LOCUST_PARTNER_ORDER_CODES codes per partner bulk order (at most 10,000) [500]
  LOCUST_IMPORT_CODES        codes per admin import [200]
  LOCUST_CALL_TIMEOUT        seconds before a call is given up [30]

Several Locust processes (--processes) each read the whole pool file: their POS users then
also meet ALREADY_REDEEMED codes, which count as failures; split the file for that.
"""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import time

import grpc
import grpc.experimental.gevent as grpc_gevent
from kamicore.v1 import (
    inventory_pb2,
    inventory_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
    redemption_pb2,
    redemption_pb2_grpc,
)
from locust import User, between, events, task

grpc_gevent.init_gevent()  # gRPC's completion queue must cooperate with Locust's gevent loop


def _env_float_pair(name: str, default: str) -> tuple[float, float]:
    low, _, high = os.environ.get(name, default).partition(",")
    return float(low), float(high or low)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


TARGET = os.environ.get("KAMICORE_TARGET", "127.0.0.1:50051")
SKU = os.environ.get("KAMICORE_SKU", "bench-gift-50")
CALL_TIMEOUT_SECONDS = float(os.environ.get("LOCUST_CALL_TIMEOUT", "30"))
PARTNER_ORDER_CODES = _env_int("LOCUST_PARTNER_ORDER_CODES", 500)
IMPORT_CODES = _env_int("LOCUST_IMPORT_CODES", 200)
IMPORT_BATCH = os.environ.get("KAMICORE_IMPORT_BATCH", f"locust-{os.getpid()}")
RUN_TAG = secrets.token_hex(3)  # idempotency keys and request ids unique to this process

# codes POS users redeem: the pool file first, then what storefront users bought here
redeemable: collections.deque = collections.deque()
redeemed: collections.deque = collections.deque(maxlen=10_000)  # for VerifyCode
sequence = itertools.count(1)


@events.init.add_listener
def load_pool(environment, **kwargs) -> None:
    path = os.environ.get("KAMICORE_POOL_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            redeemable.extend(line.strip() for line in handle if line.strip())


class StatusError(Exception):
    """A reply whose business status the scenario did not expect (the name is the status)."""


class GrpcClient:
    """A channel with one API key; every call is timed and reported to Locust."""

    def __init__(self, environment, target: str, key: str):
        self.environment = environment
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", 64 * 2**20)])
        self.metadata = (("authorization", f"Bearer {key}"),)
        self.orders = orders_pb2_grpc.OrdersStub(self.channel)
        self.redemption = redemption_pb2_grpc.RedemptionStub(self.channel)
        self.inventory = inventory_pb2_grpc.InventoryStub(self.channel)

    def call(self, name: str, method, request, ok: tuple = (), status_enum=None):
        """method(request) -> the reply, or None if it failed (the failure is reported)."""
        started = time.perf_counter()
        reply, exception, length = None, None, 0
        try:
            reply = method(request, metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
            length = reply.ByteSize()
            if ok and reply.status not in ok:
                label = status_enum.Name(reply.status) if status_enum else str(reply.status)
                exception = StatusError(label)
        except grpc.RpcError as error:
            exception = StatusError(f"{error.code().name}: {error.details()}")
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, response=reply, context={}, exception=exception)
        return reply if exception is None else None

    def close(self) -> None:
        self.channel.close()


class KamicoreUser(User):
    abstract = True
    host = TARGET
    key_variable = ""

    def on_start(self) -> None:
        key = os.environ.get(self.key_variable, "")
        if not key:
            raise RuntimeError(f"{self.key_variable} is not set")
        self.client = GrpcClient(self.environment, self.host or TARGET, key)

    def on_stop(self) -> None:
        self.client.close()

    def buy(self, quantity: int, name_suffix: str = "") -> list[str]:
        """CreateOrder then ConfirmPayment of the order's total; the delivered codes."""
        key = f"locust-{RUN_TAG}-{next(sequence)}"
        lines = [orders_pb2.OrderLine(sku_id=SKU, quantity=min(1000, quantity - start))
                 for start in range(0, quantity, 1000)]
        created = self.client.call(
            f"Orders/CreateOrder{name_suffix}", self.client.orders.CreateOrder,
            orders_pb2.CreateOrderRequest(
                idempotency_key=key, buyer=orders_pb2.Buyer(
                    account_id=f"acct-{next(sequence) % 5000}", ip="192.0.2.7",
                    device_id="locust"), lines=lines, hold_seconds=900),
            ok=(orders_pb2.CREATE_ORDER_STATUS_CREATED,), status_enum=orders_pb2.CreateOrderStatus)
        if created is None:
            return []
        paid = self.client.call(
            f"Orders/ConfirmPayment{name_suffix}", self.client.orders.ConfirmPayment,
            orders_pb2.ConfirmPaymentRequest(order_id=created.order.order_id,
                                             payment_reference=f"pay-{key}",
                                             amount=created.order.total),
            ok=(orders_pb2.CONFIRM_PAYMENT_STATUS_PAID,),
            status_enum=orders_pb2.ConfirmPaymentStatus)
        if paid is None:
            return []
        self.last_order_id = created.order.order_id
        return [code.code for code in paid.order.codes]


class StorefrontUser(KamicoreUser):
    """A shop: looks at stock, sells one code, takes payment, shows the buyer the code."""

    key_variable = "KAMICORE_STOREFRONT_KEY"
    weight = _env_int("LOCUST_WEIGHT_STOREFRONT", 10)
    wait_time = between(*_env_float_pair("LOCUST_WAIT_STOREFRONT", "0.5,2"))

    @task
    def purchase(self) -> None:
        self.client.call("Inventory/GetStock", self.client.inventory.GetStock,
                         inventory_pb2.GetStockRequest(sku_id=SKU),
                         ok=(inventory_pb2.STOCK_STATUS_FOUND,),
                         status_enum=inventory_pb2.StockStatus)
        codes = self.buy(1)
        if not codes:
            return
        self.client.call("Orders/GetDelivery", self.client.orders.GetDelivery,
                         orders_pb2.GetDeliveryRequest(order_id=self.last_order_id),
                         ok=(orders_pb2.ORDER_LOOKUP_STATUS_FOUND,),
                         status_enum=orders_pb2.OrderLookupStatus)
        redeemable.extend(codes)  # the buyer takes it to a till


class PosUser(KamicoreUser):
    """A till: redeems codes buyers bring (sold ones), and checks codes before taking them."""

    key_variable = "KAMICORE_POS_KEY"
    weight = _env_int("LOCUST_WEIGHT_POS", 10)
    wait_time = between(*_env_float_pair("LOCUST_WAIT_POS", "0.2,1"))

    @task(3)
    def redeem(self) -> None:
        if not redeemable:
            return self.verify()
        code = redeemable.popleft()
        reply = self.client.call(
            "Redemption/Redeem", self.client.redemption.Redeem,
            redemption_pb2.RedeemRequest(code=code, request_id=f"{RUN_TAG}-{next(sequence)}"),
            ok=(redemption_pb2.REDEEM_STATUS_REDEEMED,), status_enum=redemption_pb2.RedeemStatus)
        if reply is not None:
            redeemed.append(code)

    @task(1)
    def verify(self) -> None:
        if not redeemed and not redeemable:
            return
        code = redeemed[-1] if redeemed else redeemable[0]
        self.client.call("Redemption/VerifyCode", self.client.redemption.VerifyCode,
                         redemption_pb2.VerifyCodeRequest(code=code),
                         ok=(redemption_pb2.VERIFY_STATUS_FOUND,),
                         status_enum=redemption_pb2.VerifyStatus)


class PartnerUser(KamicoreUser):
    """A reseller platform buying codes in bulk through its SDK."""

    key_variable = "KAMICORE_PARTNER_KEY"
    weight = _env_int("LOCUST_WEIGHT_PARTNER", 1)
    wait_time = between(*_env_float_pair("LOCUST_WAIT_PARTNER", "2,5"))

    @task
    def bulk_order(self) -> None:
        self.buy(PARTNER_ORDER_CODES, f" ({PARTNER_ORDER_CODES} codes)")


class AdminUser(KamicoreUser):
    """An operator importing small supplier batches while the shop sells."""

    key_variable = "KAMICORE_ADMIN_KEY"
    fixed_count = _env_int("LOCUST_ADMIN_USERS", 1)
    wait_time = between(*_env_float_pair("LOCUST_WAIT_ADMIN", "5,10"))

    @task
    def import_batch(self) -> None:
        number = next(sequence)
        codes = [f"LCST-{RUN_TAG}-{number:06d}-{index:05d}".upper()
                 for index in range(IMPORT_CODES)]
        requests = [inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(
                        sku_id=SKU, batch_id=f"{IMPORT_BATCH}-{number}",
                        supplier_id="locust-supplier", unit_cost_micros=900_000)),
                    inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=codes))]
        self.client.call(f"Inventory/ImportCodes ({IMPORT_CODES} codes)",
                         lambda request, **options: self.client.inventory.ImportCodes(
                             iter(request), **options),
                         requests, ok=(inventory_pb2.IMPORT_STATUS_OK,),
                         status_enum=inventory_pb2.ImportStatus)
