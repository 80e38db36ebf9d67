"""kamicore's gRPC API as the load benchmarks use it: method paths, the catalog they sell, requests
serialised ahead of timing, and replies counted after it."""

from __future__ import annotations

METHOD_REDEEM = "/kamicore.v1.Redemption/Redeem"
METHOD_BATCH = "/kamicore.v1.Redemption/RedeemBatch"
METHOD_STREAM = "/kamicore.v1.Redemption/RedeemStream"
METHOD_VERIFY = "/kamicore.v1.Redemption/VerifyCode"
METHOD_CREATE = "/kamicore.v1.Orders/CreateOrder"
METHOD_CONFIRM = "/kamicore.v1.Orders/ConfirmPayment"
METHOD_IMPORT = "/kamicore.v1.Inventory/ImportCodes"
METHOD_HEALTH = "/grpc.health.v1.Health/Check"

call_timeout_seconds = 30.0  # a call that takes longer means the server is stuck
BATCH_CODES = 1_000  # RedeemBatch: the largest batch

# every benchmark's SKU sells at these prices (per code); one-code orders pay 1.00 CNY on web
CURRENCY = "CNY"
PRICES = {"web": 1_000_000, "partner": 950_000}
CHANNEL = "web"  # the storefront key's channel


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


class Requests:
    """Serialised requests: distinct request ids (a terminal's sequence numbers, fixed width so
    each new key sorts last) and distinct order keys, both tagged with `tag`."""

    def __init__(self, tag: str, sku: str):
        self.tag = tag
        self.sku = sku
        self.number = 0

    def _next(self) -> int:
        self.number += 1
        return self.number

    def redeem(self, codes: list[str]) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        return [redemption_pb2.RedeemRequest(code=code, request_id=f"{self.tag}{self._next():011d}")
                .SerializeToString() for code in codes]

    def batch(self, codes: list[str]) -> list[bytes]:
        """RedeemBatch calls of BATCH_CODES codes each."""
        from kamicore.v1 import redemption_pb2
        calls = []
        for start in range(0, len(codes), BATCH_CODES):
            items = [redemption_pb2.RedeemRequest(code=code,
                                                  request_id=f"{self.tag}{self._next():011d}")
                     for code in codes[start:start + BATCH_CODES]]
            calls.append(redemption_pb2.RedeemBatchRequest(items=items).SerializeToString())
        return calls

    def verify(self, codes: list[str]) -> list[bytes]:
        from kamicore.v1 import redemption_pb2
        return [redemption_pb2.VerifyCodeRequest(code=code).SerializeToString() for code in codes]

    def orders(self, count: int) -> list[tuple[bytes, bytes]]:
        """(CreateOrder, ConfirmPayment) of one-code orders on the storefront's channel."""
        from kamicore.v1 import common_pb2, orders_pb2
        pairs = []
        for _ in range(count):
            number = self._next()
            key = f"{self.tag}-order-{number}"
            create = orders_pb2.CreateOrderRequest(
                idempotency_key=key,
                buyer=orders_pb2.Buyer(account_id=f"buyer-{number % 1000}", ip="192.0.2.1",
                                       device_id="bench"),
                lines=[orders_pb2.OrderLine(sku_id=self.sku, quantity=1)], hold_seconds=900)
            confirm = orders_pb2.ConfirmPaymentRequest(
                order_id=f"storefront:{CHANNEL}/{key}", payment_reference=f"pay-{key}",
                amount=common_pb2.Money(currency=CURRENCY, amount_micros=PRICES[CHANNEL]))
            pairs.append((create.SerializeToString(), confirm.SerializeToString()))
        return pairs


def count_succeeded(kind: str, replies: list) -> int:
    """Items whose reply says they were done: REDEEMED codes, FOUND codes (verify), or orders
    CREATED and PAID."""
    from kamicore.v1 import orders_pb2, redemption_pb2
    redeemed = redemption_pb2.REDEEM_STATUS_REDEEMED
    if kind in ("redeem", "stream"):
        parse = redemption_pb2.RedeemResponse.FromString
        return sum(parse(reply).status == redeemed for reply in replies)
    if kind == "batch":
        parse = redemption_pb2.RedeemBatchResponse.FromString
        return sum(result.status == redeemed for reply in replies
                   for result in parse(reply).results)
    if kind == "verify":
        parse = redemption_pb2.VerifyCodeResponse.FromString
        return sum(parse(reply).status == redemption_pb2.VERIFY_STATUS_FOUND for reply in replies)
    created, paid = orders_pb2.CREATE_ORDER_STATUS_CREATED, orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
    return sum(orders_pb2.CreateOrderResponse.FromString(create).status == created
               and orders_pb2.ConfirmPaymentResponse.FromString(confirm).status == paid
               for create, confirm in replies)
