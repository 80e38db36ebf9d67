"""Fields a request carries beyond the .proto are never stored nor answered, end to end, on a
server of its own: every RPC gets requests whose every message (the request, each sub-message,
each item of a list) carries an unknown field with a marker, the top one 1.5 MB more of them in
three fields (an admin-created SKU carrying 1.68 MB of unknown fields once made ListSkus fail
for every storefront), around known fields at their limits. Afterwards no reply, no file of the
data dir and no log line holds the marker, and what was stored is exactly the known fields."""

from __future__ import annotations

import secrets

import pytest
from google.protobuf.descriptor import FieldDescriptor
from kamicore import limits
from kamicore.v1 import catalog_pb2, common_pb2, inventory_pb2, orders_pb2

from .e2e_support import O, R, largest_sku, sized
from .server_harness import Server, new_codes, pay_request

MARKER = secrets.token_hex(16).encode()
unknown_bytes_on_top = 1_500_000  # in three fields, on the top message of each request
CHANNEL = sized("web", limits.binding_bytes_max, "w")
TERMINAL = sized("till", limits.terminal_bytes_max, "t")


def _unknown_field(number: int, size: int) -> bytes:
    """A length-delimited field numbered `number` (not in any kamicore.v1 message) of the
    marker repeated to `size` bytes, as it goes on the wire."""
    payload = (MARKER * (size // len(MARKER) + 1))[:size]
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _mark(message) -> None:
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in (value if field.is_repeated else [value]):
                _mark(item)
    message.MergeFromString(_unknown_field(999, 64))


def carrying(message, big: bool = True):
    """A copy of `message` whose every message carries unknown fields (see the docstring)."""
    copy = type(message)()
    copy.CopyFrom(message)
    _mark(copy)
    if big:
        for number in (900, 901, 902):
            copy.MergeFromString(_unknown_field(number, unknown_bytes_on_top // 3))
    assert MARKER in copy.SerializeToString()  # the client really sends them
    return copy


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("unknown") / "data", name="unknown").start()
    try:
        yield {"server": server, "admin": server.client(server.admin_key),
               "shop": server.client(server.create_key("storefront", CHANNEL)[0]),
               "till": server.client(server.create_key("pos", TERMINAL)[0])}
    finally:
        assert server.stop() == 0


def _buyer() -> orders_pb2.Buyer:
    return orders_pb2.Buyer(account_id=sized("buyer", limits.account_bytes_max),
                            ip=sized("ip", limits.buyer_field_bytes_max),
                            device_id=sized("device", limits.buyer_field_bytes_max))


def _order_request(key: str, sku_id: str, quantity: int) -> orders_pb2.CreateOrderRequest:
    return orders_pb2.CreateOrderRequest(
        idempotency_key=sized(key, limits.idempotency_key_bytes_max), buyer=_buyer(),
        lines=[orders_pb2.OrderLine(sku_id=sku_id, quantity=quantity)], hold_seconds=600)


def test_unknown_fields_reach_neither_the_data_file_nor_a_reply(run):
    admin, shop, till, server = run["admin"], run["shop"], run["till"], run["server"]
    replies = []

    def answer(reply):
        replies.append(reply)
        return reply

    sku = largest_sku("unknown-sku", CHANNEL)
    created = answer(admin.catalog.CreateSku(carrying(catalog_pb2.CreateSkuRequest(sku=sku))))
    assert created.status == catalog_pb2.CREATE_SKU_STATUS_CREATED
    sku.name = sized("renamed", limits.display_name_bytes_max)
    updated = answer(admin.catalog.UpdateSku(carrying(catalog_pb2.UpdateSkuRequest(sku=sku))))
    assert updated.status == catalog_pb2.SKU_LOOKUP_STATUS_FOUND
    codes = new_codes(12)
    header = inventory_pb2.ImportHeader(
        sku_id=sku.sku_id, batch_id=sized("batch", limits.name_bytes_max),
        supplier_id=sku.supplier_ids[0], unit_cost_micros=limits.unit_cost_micros_max)
    imported = answer(admin.inventory.ImportCodes(iter([
        carrying(inventory_pb2.ImportCodesRequest(header=header)),
        carrying(inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=codes)))])))
    assert (imported.status, imported.imported) == (inventory_pb2.IMPORT_STATUS_OK, 12)

    order = answer(shop.orders.CreateOrder(carrying(_order_request("paid", sku.sku_id, 8))))
    assert order.status == O.CREATE_ORDER_STATUS_CREATED
    reference = sized("pay", limits.payment_reference_bytes_max)
    paid = answer(shop.orders.ConfirmPayment(carrying(pay_request(order.order, reference))))
    assert paid.status == O.CONFIRM_PAYMENT_STATUS_PAID
    order_id = order.order.order_id
    held = answer(shop.orders.CreateOrder(carrying(_order_request("held", sku.sku_id, 1))))
    answer(shop.orders.CancelOrder(carrying(orders_pb2.CancelOrderRequest(
        order_id=held.order.order_id))))
    answer(shop.orders.GetDelivery(carrying(orders_pb2.GetDeliveryRequest(order_id=order_id))))
    answer(shop.orders.GetOrder(carrying(orders_pb2.GetOrderRequest(order_id=order_id))))
    reissued = answer(shop.orders.ReportInvalidCode(carrying(orders_pb2.ReportInvalidCodeRequest(
        order_id=order_id, code_id=paid.order.codes[0].code_id, reason="it did not work"))))
    assert reissued.status == O.REPORT_INVALID_STATUS_REISSUED

    sold = [code.code for code in paid.order.codes[1:]]
    request_ids = [sized(f"r-{n}", limits.request_id_bytes_max) for n in range(4)]
    redeemed = [answer(till.redemption.Redeem(carrying(R.RedeemRequest(
        code=sold[0], request_id=request_ids[0]))))]
    redeemed += answer(till.redemption.RedeemBatch(carrying(R.RedeemBatchRequest(items=[
        R.RedeemRequest(code=sold[1], request_id=request_ids[1]),
        R.RedeemRequest(code=sold[2], request_id=request_ids[2])])))).results
    redeemed += [answer(reply) for reply in till.redemption.RedeemStream(iter([carrying(
        R.RedeemRequest(code=sold[3], request_id=request_ids[3]))]))]
    assert [reply.status for reply in redeemed] == [R.REDEEM_STATUS_REDEEMED] * 4
    assert {reply.redeemed_by_terminal for reply in redeemed} == {TERMINAL}
    verified = answer(till.redemption.VerifyCode(carrying(R.VerifyCodeRequest(code=sold[0]))))
    assert verified.redeemed_by_terminal == TERMINAL

    def code_op(codes_refs):
        return carrying(inventory_pb2.CodeOpRequest(codes=codes_refs, reason="unknown fields"))
    available = [inventory_pb2.CodeRef(code=code) for code in codes
                 if code not in {delivered.code for delivered in paid.order.codes}][:2]
    for call in (admin.inventory.FreezeCodes, admin.inventory.UnfreezeCodes):
        done = answer(call(code_op(available)))
        assert {result.status for result in done.results} == {inventory_pb2.CODE_OP_STATUS_DONE}
    voided = answer(admin.inventory.VoidCodes(code_op([inventory_pb2.CodeRef(
        code_id=paid.order.codes[5].code_id)])))
    assert voided.results[0].status == inventory_pb2.CODE_OP_STATUS_DONE
    answer(admin.inventory.RotateKeys(carrying(inventory_pb2.RotateKeysRequest())))
    answer(admin.inventory.GetStock(carrying(inventory_pb2.GetStockRequest(sku_id=sku.sku_id))))
    stored = answer(admin.catalog.GetSku(carrying(catalog_pb2.GetSkuRequest(sku_id=sku.sku_id))))
    listed = answer(shop.catalog.ListSkus(carrying(catalog_pb2.ListSkusRequest(page_size=1000))))

    # what was stored is exactly the known fields
    stored_sku = catalog_pb2.Sku()
    stored_sku.CopyFrom(stored.sku)
    stored_sku.ClearField("created_ms")
    stored_sku.ClearField("updated_ms")
    assert stored_sku == sku
    assert [listed_sku.sku_id for listed_sku in listed.skus] == [sku.sku_id]
    kept = shop.orders.GetOrder(orders_pb2.GetOrderRequest(order_id=order_id)).order
    assert (kept.buyer, kept.payment_reference, kept.channel) == (_buyer(), reference, CHANNEL)
    assert kept.total == common_pb2.Money(currency="CNY",
                                          amount_micros=8 * limits.price_micros_max)

    holding = [type(reply).__name__ for reply in replies if MARKER in reply.SerializeToString()]
    holding += [path.name for path in server.data_dir.rglob("*")
                if path.is_file() and MARKER in path.read_bytes()]
    holding += ["the server log"] if MARKER.decode() in server.logs() else []
    assert not holding, f"an unknown field's bytes are in {holding}"
