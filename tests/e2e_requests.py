"""The request tables of the end-to-end tests: a minimal valid request per RPC (the auth matrix
of tests/test_e2e_server.py sends each with every role) and the bad requests that every service
must refuse, naming the field, without changing anything."""

from __future__ import annotations

import grpc
from kamicore.v1 import (
    catalog_pb2, common_pb2, events_pb2, inventory_pb2, orders_pb2, reports_pb2, risk_pb2,
    suppliers_pb2, webhooks_pb2,
)

from .e2e_support import NOT_FOUND, R, uid
from .events_support import taken
from .server_harness import CURRENCY, import_codes, order_request, pay_request, sku_message

# -- a minimal valid request per method (for the auth matrix) -------------------------------------

def _minimal_requests() -> dict[str, tuple[str, object, object]]:
    """A minimal valid request per method: (kind, request or messages, response class)."""
    unknown_order = orders_pb2.GetOrderRequest(order_id="storefront:web/auth-none")
    return {
        "/kamicore.v1.Catalog/CreateSku": ("unary", catalog_pb2.CreateSkuRequest(
            sku=sku_message("auth-matrix-sku")), catalog_pb2.CreateSkuResponse),
        "/kamicore.v1.Catalog/UpdateSku": ("unary", catalog_pb2.UpdateSkuRequest(
            sku=sku_message("auth-matrix-none")), catalog_pb2.UpdateSkuResponse),
        "/kamicore.v1.Catalog/GetSku": ("unary", catalog_pb2.GetSkuRequest(
            sku_id="auth-matrix-none"), catalog_pb2.GetSkuResponse),
        "/kamicore.v1.Catalog/ListSkus": ("unary", catalog_pb2.ListSkusRequest(page_size=1),
                                          catalog_pb2.ListSkusResponse),
        "/kamicore.v1.Inventory/ImportCodes": ("stream_unary", [
            inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(
                sku_id="auth-matrix-none", batch_id="auth", supplier_id="S-1"))],
            inventory_pb2.ImportCodesResponse),
        "/kamicore.v1.Inventory/GetStock": ("unary", inventory_pb2.GetStockRequest(
            sku_id="auth-matrix-none"), inventory_pb2.GetStockResponse),
        "/kamicore.v1.Inventory/FreezeCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/UnfreezeCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/VoidCodes": ("unary", inventory_pb2.CodeOpRequest(
            codes=[inventory_pb2.CodeRef(code_id=2**62)]), inventory_pb2.CodeOpResponse),
        "/kamicore.v1.Inventory/RotateKeys": ("unary", inventory_pb2.RotateKeysRequest(),
                                              inventory_pb2.RotateKeysResponse),
        "/kamicore.v1.Orders/CreateOrder": ("unary", order_request(
            "auth-matrix", "auth-matrix-none"), orders_pb2.CreateOrderResponse),
        "/kamicore.v1.Orders/ConfirmPayment": ("unary", orders_pb2.ConfirmPaymentRequest(
            order_id=unknown_order.order_id, payment_reference="auth",
            amount=common_pb2.Money(currency=CURRENCY, amount_micros=1)),
            orders_pb2.ConfirmPaymentResponse),
        "/kamicore.v1.Orders/CancelOrder": ("unary", orders_pb2.CancelOrderRequest(
            order_id=unknown_order.order_id), orders_pb2.CancelOrderResponse),
        "/kamicore.v1.Orders/GetOrder": ("unary", unknown_order, orders_pb2.GetOrderResponse),
        "/kamicore.v1.Orders/GetDelivery": ("unary", orders_pb2.GetDeliveryRequest(
            order_id=unknown_order.order_id), orders_pb2.GetDeliveryResponse),
        "/kamicore.v1.Orders/ReportInvalidCode": ("unary", orders_pb2.ReportInvalidCodeRequest(
            order_id=unknown_order.order_id, code_id=1), orders_pb2.ReportInvalidCodeResponse),
        "/kamicore.v1.Redemption/Redeem": ("unary", R.RedeemRequest(
            code="AUTH-MATRIX-NONE", request_id="auth"), R.RedeemResponse),
        "/kamicore.v1.Redemption/RedeemBatch": ("unary", R.RedeemBatchRequest(items=[
            R.RedeemRequest(code="AUTH-MATRIX-NONE", request_id="auth")]),
            R.RedeemBatchResponse),
        "/kamicore.v1.Redemption/RedeemStream": ("stream_stream", [R.RedeemRequest(
            code="AUTH-MATRIX-NONE", request_id="auth")], R.RedeemResponse),
        "/kamicore.v1.Redemption/VerifyCode": ("unary", R.VerifyCodeRequest(
            code="AUTH-MATRIX-NONE"), R.VerifyCodeResponse),
        "/kamicore.v1.Redemption/UnlockTerminal": ("unary", R.UnlockTerminalRequest(
            terminal="AUTH-MATRIX-NONE"), R.UnlockTerminalResponse),
        "/kamicore.v1.Risk/GetRiskRules": ("unary", risk_pb2.GetRiskRulesRequest(),
                                           risk_pb2.GetRiskRulesResponse),
        # a version that never is: answered VERSION_CONFLICT, the shared server's rules stay
        "/kamicore.v1.Risk/SetRiskRules": ("unary", risk_pb2.SetRiskRulesRequest(
            expected_version=2**62), risk_pb2.SetRiskRulesResponse),
        "/kamicore.v1.Risk/ListReviews": ("unary", risk_pb2.ListReviewsRequest(page_size=1),
                                          risk_pb2.ListReviewsResponse),
        "/kamicore.v1.Risk/DecideReview": ("unary", risk_pb2.DecideReviewRequest(
            order_id=unknown_order.order_id), risk_pb2.DecideReviewResponse),
        # the same supplier every time: answered REGISTERED again
        "/kamicore.v1.Suppliers/RegisterSupplier": ("unary", suppliers_pb2.RegisterSupplierRequest(
            supplier=_matrix_supplier("auth-matrix-supplier")),
            suppliers_pb2.RegisterSupplierResponse),
        "/kamicore.v1.Suppliers/UpdateSupplier": ("unary", suppliers_pb2.UpdateSupplierRequest(
            supplier=_matrix_supplier("auth-matrix-none")), suppliers_pb2.UpdateSupplierResponse),
        "/kamicore.v1.Suppliers/ListSuppliers": ("unary", suppliers_pb2.ListSuppliersRequest(
            page_size=1), suppliers_pb2.ListSuppliersResponse),
        "/kamicore.v1.Suppliers/GetSupplierStats": ("unary",
                                                    suppliers_pb2.GetSupplierStatsRequest(
                                                        supplier_id="auth-matrix-none"),
                                                    suppliers_pb2.GetSupplierStatsResponse),
        # the supplier key's own id, never registered here: answered SUPPLIER_NOT_FOUND
        "/kamicore.v1.Suppliers/SupplierCallback": ("unary", suppliers_pb2.SupplierCallbackRequest(
            supplier_id="S-1", payload=b"{}", timestamp_ms=1, signature="00"),
            suppliers_pb2.SupplierCallbackResponse),
        "/kamicore.v1.Events/WatchEvents": ("unary_stream", events_pb2.WatchEventsRequest(
            from_now=True), events_pb2.WatchEventsResponse),
        # the same endpoint every time, disabled (nothing is POSTed): answered REGISTERED again
        "/kamicore.v1.Webhooks/RegisterWebhook": ("unary", webhooks_pb2.RegisterWebhookRequest(
            webhook=_matrix_webhook("auth-matrix-webhook")),
            webhooks_pb2.RegisterWebhookResponse),
        "/kamicore.v1.Webhooks/UpdateWebhook": ("unary", webhooks_pb2.UpdateWebhookRequest(
            webhook=_matrix_webhook("auth-matrix-none")), webhooks_pb2.UpdateWebhookResponse),
        "/kamicore.v1.Webhooks/ListWebhooks": ("unary", webhooks_pb2.ListWebhooksRequest(
            page_size=1), webhooks_pb2.ListWebhooksResponse),
        "/kamicore.v1.Webhooks/DeleteWebhook": ("unary", webhooks_pb2.DeleteWebhookRequest(
            webhook_id="auth-matrix-none"), webhooks_pb2.DeleteWebhookResponse),
        **_report_requests(),
    }


def _report_requests() -> dict[str, tuple[str, object, object]]:
    """The Reports service's methods, each with an empty request but for what it needs."""
    requests = {"StockExpiring": reports_pb2.StockExpiringRequest(within_days=1),
                "ReconcileSettlement": reports_pb2.ReconcileSettlementRequest(
                    csv=b"auth-matrix-none,1.00,CNY,1\n")}
    service = reports_pb2.DESCRIPTOR.services_by_name["Reports"]
    return {f"/kamicore.v1.Reports/{method.name}": (
        "unary", requests.get(method.name) or getattr(reports_pb2, method.input_type.name)(),
        getattr(reports_pb2, method.output_type.name)) for method in service.methods}


def _matrix_supplier(supplier_id: str) -> suppliers_pb2.Supplier:
    return suppliers_pb2.Supplier(
        supplier_id=supplier_id, protocol=suppliers_pb2.SUPPLIER_PROTOCOL_GRPC,
        address="127.0.0.1:9", timeout_ms=1000, signing_secret=b"auth-matrix-secret-0123")


def _matrix_webhook(webhook_id: str) -> webhooks_pb2.Webhook:
    return webhooks_pb2.Webhook(
        webhook_id=webhook_id, url="http://127.0.0.1:9/hooks",
        scope=webhooks_pb2.WEBHOOK_SCOPE_ALL, signing_secret=b"auth-matrix-secret-0123")


MINIMAL_REQUESTS = _minimal_requests()
ROLE_CLIENTS = {"admin": "admin", "storefront": "web", "partner": "partner", "pos": "pos",
                "supplier": "supplier"}


def call_method(channel: grpc.Channel, method: str, metadata) -> grpc.StatusCode:
    """Call `method` with its minimal request; OK or the gRPC status code it failed with."""
    kind, request, response_class = MINIMAL_REQUESTS[method]
    options = {"request_serializer": lambda message: message.SerializeToString(),
               "response_deserializer": response_class.FromString}
    try:
        if kind == "unary":
            channel.unary_unary(method, **options)(request, metadata=metadata, timeout=30)
        elif kind == "unary_stream":  # WatchEvents: OK once taken (then cancelled)
            stream = channel.unary_stream(method, **options)(request, metadata=metadata,
                                                             timeout=30)
            if not taken(stream):
                list(stream)
        elif kind == "stream_unary":
            channel.stream_unary(method, **options)(iter(request), metadata=metadata,
                                                    timeout=30)
        else:
            list(channel.stream_stream(method, **options)(iter(request), metadata=metadata,
                                                          timeout=30))
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


# -- bad input, refused naming the field (for the bad-input table) --------------------------------

def _bad_sku(base_id: str | None = None, **changes) -> catalog_pb2.Sku:
    sku = sku_message(base_id or uid("bad-sku"))
    for name, value in changes.items():
        if name == "currency":
            sku.face_value.currency = value
        elif name == "price":
            sku.prices[0].price_micros = value
        elif name == "duplicate_channel":
            sku.prices.add(channel="web", price_micros=1)
        elif name == "supplier_ids":
            sku.supplier_ids.extend(value)
        else:
            setattr(sku, name, value)
    return sku


def _import(s, header_fields=None, chunks=(), header=True):
    fields = {"sku_id": s.sku_id, "batch_id": f"{s.sku_id}-batch",
              "unit_cost_micros": 40_000_000, **(header_fields or {})}
    messages = [inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(**fields))
                ] if header else []
    messages += [inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=chunk))
                 for chunk in chunks]
    return lambda c: c.admin.inventory.ImportCodes(iter(messages))


def _order(s, **changes):
    request = order_request(uid("bad"), s.sku_id, 1)
    for name, value in changes.items():
        if name == "account":
            request.buyer.account_id = value
        elif name == "quantity":
            request.lines[0].quantity = value
        elif name == "lines":
            del request.lines[:]
            request.lines.extend(value)
        else:
            setattr(request, name, value)
    return request


def _items(count, request_id="r"):
    return [R.RedeemRequest(code=f"BAD-{index}", request_id=f"{request_id}{index}")
            for index in range(count)]


def _ref(**field):
    return inventory_pb2.CodeRef(**field)


def _stopped_at_first_chunk(problem: str):
    """An import stopped at its first chunk: nothing imported (a bad chunk later in a stream
    stops it after the chunks before it: tests/test_e2e_import_stream.py)."""
    return lambda reply: (reply.status == inventory_pb2.IMPORT_STATUS_INVALID_CHUNK
                          and reply.invalid_chunk.startswith(problem)
                          and reply.rows_processed == reply.imported == 0)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BIG = grpc.StatusCode.RESOURCE_EXHAUSTED
MiB = 2**20
# (id, call(c, s) -> reply, expected): expected is (INVALID, "field named in the details"),
# (BIG, None), or a predicate on the reply for documented business statuses
BAD_INPUT = [
    ("CreateSku no sku_id", lambda c, s: c.admin.catalog.CreateSku(catalog_pb2.CreateSkuRequest(
        sku=_bad_sku(None, sku_id=""))), (INVALID, "sku.sku_id")),
    ("CreateSku bad currency", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(currency="yuan"))),
     (INVALID, "sku.face_value.currency")),
    ("CreateSku no delivery kind", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(delivery_kind=0))),
     (INVALID, "sku.delivery_kind")),
    ("CreateSku negative price", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(price=-1))),
     (INVALID, "sku.prices[0].price_micros")),
    ("CreateSku channel twice", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(duplicate_channel=True))),
     (INVALID, "sku.prices[2].channel")),
    ("CreateSku empty supplier id", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(supplier_ids=["S-1", ""]))),
     (INVALID, "sku.supplier_ids[1]")),
    ("CreateSku supplier twice", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(supplier_ids=["S-1", "S-2", "S-1"]))),
     (INVALID, "sku.supplier_ids[2]")),
    ("CreateSku supplier id 65 bytes", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(supplier_ids=["S" * 65]))),
     (INVALID, "sku.supplier_ids[0]")),
    ("UpdateSku 101 suppliers", lambda c, s: c.admin.catalog.UpdateSku(
        catalog_pb2.UpdateSkuRequest(sku=_bad_sku(s.sku_id, supplier_ids=[
            f"S-{index}" for index in range(101)]))), (INVALID, "sku.supplier_ids")),
    ("CreateSku oversize message", lambda c, s: c.admin.catalog.CreateSku(
        catalog_pb2.CreateSkuRequest(sku=_bad_sku(name="N" * (5 * MiB)))), (BIG, None)),
    ("UpdateSku no name", lambda c, s: c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(
        sku=_bad_sku(s.sku_id, name=""))), (INVALID, "sku.name")),
    ("UpdateSku unknown", lambda c, s: c.admin.catalog.UpdateSku(catalog_pb2.UpdateSkuRequest(
        sku=sku_message(uid("bad-unknown")))),
     lambda reply: reply.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND),
    ("GetSku no sku_id", lambda c, s: c.web.catalog.GetSku(catalog_pb2.GetSkuRequest()),
     (INVALID, "sku_id")),
    ("GetSku unknown", lambda c, s: c.web.catalog.GetSku(catalog_pb2.GetSkuRequest(
        sku_id=uid("bad-unknown"))),
     lambda reply: reply.status == catalog_pb2.SKU_LOOKUP_STATUS_NOT_FOUND),
    ("ListSkus page_size 1001", lambda c, s: c.web.catalog.ListSkus(catalog_pb2.ListSkusRequest(
        page_size=1001)), (INVALID, "page_size")),
    ("GetStock no sku_id", lambda c, s: c.admin.inventory.GetStock(
        inventory_pb2.GetStockRequest()), (INVALID, "sku_id")),
    ("GetStock unknown", lambda c, s: c.admin.inventory.GetStock(inventory_pb2.GetStockRequest(
        sku_id=uid("bad-unknown"))),
     lambda reply: reply.status == inventory_pb2.STOCK_STATUS_NOT_FOUND),
    ("ImportCodes without header", lambda c, s: _import(s, chunks=[["BAD-NO-HEADER"]],
                                                        header=False)(c), (INVALID, "header")),
    ("ImportCodes empty stream", lambda c, s: _import(s, header=False)(c), (INVALID, "header")),
    ("ImportCodes header twice", lambda c, s: c.admin.inventory.ImportCodes(iter([
        inventory_pb2.ImportCodesRequest(header=inventory_pb2.ImportHeader(sku_id=s.sku_id,
                                                                           batch_id="b"))] * 2)),
     _stopped_at_first_chunk("chunk: ")),
    ("ImportCodes chunk of 10,001", lambda c, s: _import(s, chunks=[
        [f"BAD-{index}" for index in range(10_001)]])(c),
     _stopped_at_first_chunk("chunk.codes: ")),
    ("ImportCodes valid_until before valid_from", lambda c, s: _import(s, {
        "batch_id": "bad-window", "valid_from_ms": 2_000_000_000_000,
        "valid_until_ms": 1_900_000_000_000}, chunks=[["BAD-WINDOW"]])(c),
     (INVALID, "valid_until_ms")),
    ("ImportCodes negative cost", lambda c, s: _import(s, {
        "batch_id": "bad-cost", "unit_cost_micros": -1}, chunks=[["BAD-COST"]])(c),
     (INVALID, "unit_cost_micros")),
    ("ImportCodes no batch_id", lambda c, s: _import(s, {"batch_id": ""}, chunks=[
        ["BAD-NO-BATCH"]])(c), (INVALID, "batch_id")),
    ("ImportCodes oversize chunk", lambda c, s: _import(s, chunks=[
        ["B" * 100 + str(index) for index in range(50_000)]])(c), (BIG, None)),
    ("ImportCodes unknown SKU", lambda c, s: import_codes(c.admin, uid("bad-unknown"),
                                                          ["BAD-UNKNOWN-SKU"], expect_ok=False),
     lambda reply: reply.status == inventory_pb2.IMPORT_STATUS_SKU_NOT_FOUND),
    ("FreezeCodes none", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest()), (INVALID, "codes")),
    ("FreezeCodes 1,001", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id)] * 1001)),
     (INVALID, "codes")),
    ("FreezeCodes empty ref", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id), _ref()])),
     (INVALID, "codes[1]")),
    ("FreezeCodes code_id 0", lambda c, s: c.admin.inventory.FreezeCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id),
                                           _ref(code_id=0)])), (INVALID, "codes[1]")),
    ("UnfreezeCodes none", lambda c, s: c.admin.inventory.UnfreezeCodes(
        inventory_pb2.CodeOpRequest()), (INVALID, "codes")),
    ("VoidCodes 1,001", lambda c, s: c.admin.inventory.VoidCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=s.paid.codes[0].code_id)] * 1001)),
     (INVALID, "codes")),
    ("VoidCodes unknown and malformed", lambda c, s: c.admin.inventory.VoidCodes(
        inventory_pb2.CodeOpRequest(codes=[_ref(code_id=2**62), _ref(code="bad\x01")])),
     lambda reply: [result.status for result in reply.results] == [
         inventory_pb2.CODE_OP_STATUS_NOT_FOUND, inventory_pb2.CODE_OP_STATUS_MALFORMED]),
    ("CreateOrder no idempotency_key", lambda c, s: c.web.orders.CreateOrder(
        _order(s, idempotency_key="")), (INVALID, "idempotency_key")),
    ("CreateOrder idempotency_key 65 bytes", lambda c, s: c.web.orders.CreateOrder(
        _order(s, idempotency_key="k" * 65)), (INVALID, "idempotency_key")),
    ("CreateOrder no account", lambda c, s: c.web.orders.CreateOrder(_order(s, account="")),
     (INVALID, "buyer.account_id")),
    ("CreateOrder no lines", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[])),
     (INVALID, "lines")),
    ("CreateOrder quantity 0", lambda c, s: c.web.orders.CreateOrder(_order(s, quantity=0)),
     (INVALID, "lines[0].quantity")),
    ("CreateOrder quantity 1001", lambda c, s: c.web.orders.CreateOrder(
        _order(s, quantity=1001)), (INVALID, "lines[0].quantity")),
    ("CreateOrder line without sku", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1), orders_pb2.OrderLine(quantity=1)])),
     (INVALID, "lines[1].sku_id")),
    ("CreateOrder 101 lines", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1)] * 101)), (INVALID, "lines")),
    ("CreateOrder 11,000 codes", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1000)] * 11)), (INVALID, "lines")),
    ("CreateOrder hold_seconds 86401", lambda c, s: c.web.orders.CreateOrder(
        _order(s, hold_seconds=86_401)), (INVALID, "hold_seconds")),
    ("CreateOrder mixed currencies", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1),
        orders_pb2.OrderLine(sku_id=s.usd_sku_id, quantity=1)])), (INVALID, "lines")),
    ("CreateOrder unknown SKU", lambda c, s: c.web.orders.CreateOrder(_order(s, lines=[
        orders_pb2.OrderLine(sku_id=s.sku_id, quantity=1),
        orders_pb2.OrderLine(sku_id=uid("bad-unknown"), quantity=1)])),
     lambda reply: reply.status == orders_pb2.CREATE_ORDER_STATUS_SKU_NOT_FOUND),
    ("ConfirmPayment no reference", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(order_id=s.held.order_id, amount=s.held.total)),
     (INVALID, "payment_reference")),
    ("ConfirmPayment reference 129 bytes", lambda c, s: c.web.orders.ConfirmPayment(
        pay_request(s.held, "p" * 129)), (INVALID, "payment_reference")),
    ("ConfirmPayment provider 65 bytes", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(order_id=s.held.order_id, payment_reference="p-prov",
                                         amount=s.held.total, payment_provider="p" * 65)),
     (INVALID, "payment_provider")),
    ("ConfirmPayment no order_id", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(payment_reference="p", amount=s.held.total)),
     (INVALID, "order_id")),
    ("ConfirmPayment unknown order", lambda c, s: c.web.orders.ConfirmPayment(
        orders_pb2.ConfirmPaymentRequest(order_id=f"storefront:web/{uid('bad')}",
                                         payment_reference="p", amount=s.held.total)),
     lambda reply: reply.status == orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND),
    ("ConfirmPayment negative amount", lambda c, s: c.web.orders.ConfirmPayment(
        pay_request(s.held, "p-neg", -1)),
     lambda reply: reply.status == orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH),
    ("CancelOrder no order_id", lambda c, s: c.web.orders.CancelOrder(
        orders_pb2.CancelOrderRequest()), (INVALID, "order_id")),
    ("CancelOrder unknown", lambda c, s: c.web.orders.CancelOrder(orders_pb2.CancelOrderRequest(
        order_id=uid("bad"))),
     lambda reply: reply.status == orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND),
    ("GetOrder no order_id", lambda c, s: c.web.orders.GetOrder(orders_pb2.GetOrderRequest()),
     (INVALID, "order_id")),
    ("GetOrder unknown", lambda c, s: c.web.orders.GetOrder(orders_pb2.GetOrderRequest(
        order_id=uid("bad"))), lambda reply: reply.status == NOT_FOUND),
    ("GetDelivery no order_id", lambda c, s: c.web.orders.GetDelivery(
        orders_pb2.GetDeliveryRequest()), (INVALID, "order_id")),
    ("GetDelivery unknown", lambda c, s: c.web.orders.GetDelivery(orders_pb2.GetDeliveryRequest(
        order_id=uid("bad"))), lambda reply: reply.status == NOT_FOUND),
    ("ReportInvalidCode code_id 0", lambda c, s: c.web.orders.ReportInvalidCode(
        orders_pb2.ReportInvalidCodeRequest(order_id=s.paid.order_id)), (INVALID, "code_id")),
    ("ReportInvalidCode unknown code", lambda c, s: c.web.orders.ReportInvalidCode(
        orders_pb2.ReportInvalidCodeRequest(order_id=s.paid.order_id, code_id=2**62)),
     lambda reply: reply.status == orders_pb2.REPORT_INVALID_STATUS_CODE_NOT_IN_ORDER),
    ("Redeem no request_id", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=s.paid.codes[0].code)), (INVALID, "request_id")),
    ("Redeem request_id 65 bytes", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=s.paid.codes[0].code, request_id="r" * 65)), (INVALID, "request_id")),
    ("Redeem malformed codes", lambda c, s: [c.pos.redemption.Redeem(R.RedeemRequest(
        code=code, request_id=uid("bad"))) for code in ("", "bad\x01code", "X" * 129, " - ")],
     lambda replies: {reply.status for reply in replies} == {R.REDEEM_STATUS_MALFORMED}),
    ("Redeem unknown code", lambda c, s: c.pos.redemption.Redeem(R.RedeemRequest(
        code=uid("BAD-UNKNOWN"), request_id=uid("bad"))),
     lambda reply: reply.status == R.REDEEM_STATUS_NOT_FOUND),
    ("RedeemBatch empty", lambda c, s: c.pos.redemption.RedeemBatch(R.RedeemBatchRequest()),
     (INVALID, "items")),
    ("RedeemBatch 1,001 items", lambda c, s: c.pos.redemption.RedeemBatch(R.RedeemBatchRequest(
        items=[R.RedeemRequest(code=s.paid.codes[0].code, request_id=uid("bad1001"))]
        + _items(1000))), (INVALID, "items")),
    ("RedeemBatch item without request_id", lambda c, s: c.pos.redemption.RedeemBatch(
        R.RedeemBatchRequest(items=[R.RedeemRequest(code=s.paid.codes[0].code,
                                                    request_id=uid("bad")),
                                    R.RedeemRequest(code="BAD-1")])),
     (INVALID, "items[1].request_id")),
    ("RedeemStream without request_id", lambda c, s: list(c.pos.redemption.RedeemStream(iter([
        R.RedeemRequest(code=s.paid.codes[0].code)]))), (INVALID, "request_id")),
    ("VerifyCode malformed and unknown", lambda c, s: [c.pos.redemption.VerifyCode(
        R.VerifyCodeRequest(code=code)) for code in ("", uid("BAD-UNKNOWN"))],
     lambda replies: [reply.status for reply in replies] == [R.VERIFY_STATUS_MALFORMED,
                                                             R.VERIFY_STATUS_NOT_FOUND]),
    ("RegisterWebhook ftp url", lambda c, s: c.admin.webhooks.RegisterWebhook(
        webhooks_pb2.RegisterWebhookRequest(webhook=webhooks_pb2.Webhook(
            webhook_id=uid("bad"), url="ftp://127.0.0.1/", signing_secret=b"x" * 16,
            scope=webhooks_pb2.WEBHOOK_SCOPE_ALL))), (INVALID, "webhook.url")),
    ("ListWebhooks page_size 101", lambda c, s: c.admin.webhooks.ListWebhooks(
        webhooks_pb2.ListWebhooksRequest(page_size=101)), (INVALID, "page_size")),
]
