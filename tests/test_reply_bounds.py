"""Every reply's largest size, as kamicore.limits computes it, is a true upper bound: each
reply is built here at the limits, field by field from the .proto descriptors (every text at its
limit in bytes, every number at its longest varint, every list at its most items), and its
encoding must not pass the figure the limits assert to fit 4 MiB with a margin. A field added
to a reply without a limit here fails the build, so the model cannot silently fall behind the
protos. (Replies at these limits over a real server: tests/test_e2e_reply_bounds.py.)"""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from kamicore import config, limits
from kamicore.engine import load_implementation
from kamicore.grpc.worker import SERVICE_NAMES, _message_classes
from kamicore.statuses import CodeState
from kamicore.v1 import (
    catalog_pb2, common_pb2, events_pb2, inventory_pb2, orders_pb2, redemption_pb2, reports_pb2,
    risk_pb2, suppliers_pb2, webhooks_pb2,
)

L = limits
TEXT_BYTES = {  # every string field of a reply -> its most bytes
    "Sku.sku_id": L.name_bytes_max, "Sku.name": L.display_name_bytes_max,
    "Sku.regions": L.region_bytes_max, "Sku.supplier_ids": L.name_bytes_max,
    "Money.currency": 3, "ChannelPrice.channel": L.name_bytes_max,
    "ListSkusResponse.next_page_token": L.name_bytes_max,
    "ImportCodesResponse.invalid_chunk": L.error_bytes_max,
    "BatchStock.batch_id": L.name_bytes_max, "BatchStock.supplier_id": L.name_bytes_max,
    "Order.order_id": L.order_id_bytes_max, "Order.payment_reference":
        L.payment_reference_bytes_max, "Order.channel": L.binding_bytes_max,
    "Buyer.account_id": L.account_bytes_max, "Buyer.ip": L.buyer_field_bytes_max,
    "Buyer.device_id": L.buyer_field_bytes_max, "OrderLine.sku_id": L.name_bytes_max,
    "DeliveredCode.sku_id": L.name_bytes_max, "DeliveredCode.code": L.code_bytes_max,
    "DeliveredCode.masked_code": L.code_bytes_max,
    "RedeemResponse.redeemed_by_terminal": L.terminal_bytes_max,
    "RedeemResponse.request_id": L.request_id_bytes_max,
    "VerifyCodeResponse.sku_id": L.name_bytes_max,
    "VerifyCodeResponse.redeemed_by_terminal": L.terminal_bytes_max,
    "VerifyCodeResponse.masked_code": L.code_bytes_max,
    "FiredRule.name": L.name_bytes_max, "RiskAssessment.verifications_required":
        L.name_bytes_max, "GetRiskRulesResponse.set_by": L.actor_bytes_max,
    "RiskRules.off_channels": L.name_bytes_max, "RiskRule.name": L.name_bytes_max,
    "RiskRule.kind": L.risk_kind_bytes_max, "RiskRule.verification": L.name_bytes_max,
    "RiskRule.subject": L.name_bytes_max, "RiskRule.window": L.name_bytes_max,
    "RiskRule.skus": L.name_bytes_max, "RiskRule.values": L.buyer_field_bytes_max,
    "Review.order_id": L.order_id_bytes_max, "Review.decided_by": L.actor_bytes_max,
    "ListReviewsResponse.next_page_token": 2 * (8 + L.order_id_bytes_max),
    "Event.sku_id": L.name_bytes_max, "Event.channel": L.binding_bytes_max,
    "Event.owner": L.owner_bytes_max, "Event.order_id": L.order_id_bytes_max,
    "Event.terminal": L.terminal_bytes_max, "Event.supplier_id": L.name_bytes_max,
    "Event.request_id": L.supplier_request_id_bytes_max, "Event.detail": L.event_detail_bytes_max,
    "Supplier.supplier_id": L.name_bytes_max, "Supplier.name": L.display_name_bytes_max,
    "Supplier.address": L.supplier_address_bytes_max,
    "Supplier.signing_secret": 0,  # write-only: never in a reply (tests/test_suppliers.py)
    "SupplierRoute.sku_id": L.name_bytes_max, "SupplierRoute.product": L.name_bytes_max,
    "RegisterSupplierResponse.sku_id": L.name_bytes_max,
    "UpdateSupplierResponse.sku_id": L.name_bytes_max,
    "ListSuppliersResponse.next_page_token": L.name_bytes_max,
    "Order.recipient": L.recipient_bytes_max, "TopUpAttempt.supplier_id": L.name_bytes_max,
    "TopUpAttempt.request_id": L.topup_request_id_bytes_max,
    "TopUpAttempt.supplier_reference": L.supplier_reference_bytes_max,
    "TopUpAttempt.message": L.supplier_message_bytes_max,
    "SupplierSkuStats.sku_id": L.name_bytes_max, "BatchInvalidCodes.batch_id": L.name_bytes_max,
    "Webhook.webhook_id": L.name_bytes_max, "Webhook.url": L.webhook_url_bytes_max,
    "Webhook.signing_secret": 0,  # write-only: never in a reply (tests/test_webhooks.py)
    "Webhook.scope_id": L.binding_bytes_max, "Webhook.event_types": L.event_type_bytes_max,
    "WebhookDelivery.last_error": L.webhook_error_bytes_max,
    "ListWebhooksResponse.next_page_token": L.name_bytes_max,
    **{f"{message}.{field}": bytes_max for message, fields in {
        "SalesRow": {"day": L.report_words_bytes_max, "sku_id": L.name_bytes_max,
                     "channel": L.binding_bytes_max, "currency": L.currency_bytes_max},
        "SupplierStatementRow": {"supplier_id": L.name_bytes_max,
                                 "currency": L.currency_bytes_max},
        "FlaggedAttempt": {"supplier_id": L.name_bytes_max,
                           "request_id": L.supplier_request_id_bytes_max,
                           "order_id": L.order_id_bytes_max, "sku_id": L.name_bytes_max,
                           "reason": L.report_words_bytes_max, "currency": L.currency_bytes_max},
        "BatchValue": {"sku_id": L.name_bytes_max, "batch_id": L.name_bytes_max,
                       "supplier_id": L.name_bytes_max, "currency": L.currency_bytes_max},
        "TerminalRedemptions": {"terminal": L.terminal_bytes_max, "sku_id": L.name_bytes_max},
        "RiskDecisionRow": {"rule": L.name_bytes_max, "decision": L.report_words_bytes_max},
        "Reconciliation": {"sha256": L.sha256_hex_bytes,
                           "provider": L.payment_provider_bytes_max},
        "ReconciliationLine": {"payment_reference": L.payment_reference_bytes_max,
                               "order_id": L.order_id_bytes_max},
        **{f"{report}Response": {"next_cursor": L.report_cursor_bytes_max} for report in (
            "SalesReport", "SupplierStatement", "StockValuation", "StockExpiring",
            "RedemptionsByTerminal", "RiskDecisions")},
    }.items() for field, bytes_max in fields.items()},
}
ITEMS = {  # every repeated field of a reply -> its most items
    "Sku.prices": L.prices_per_sku_max, "Sku.regions": L.regions_per_sku_max,
    "Sku.supplier_ids": L.suppliers_per_sku_max,
    "ImportCodesResponse.rejected_rows": L.rejected_rows_listed_max,
    "GetStockResponse.counts": L.code_states_max, "BatchStock.counts": L.code_states_max,
    "GetStockResponse.batches": L.batches_listed_max,
    "CodeOpResponse.results": L.codes_per_batch_max,
    "Order.attempts": L.topup_attempts_per_order_max, "Order.lines": L.lines_per_order_max,
    "Order.codes": L.codes_per_reply_max,
    "RedeemBatchResponse.results": L.codes_per_batch_max,
    "RiskAssessment.fired": L.risk_rules_max,
    "RiskAssessment.verifications_required": L.risk_rules_max,
    "RiskRules.off_channels": L.risk_list_items_max, "RiskRules.rules": L.risk_rules_max,
    "RiskRule.skus": L.risk_list_items_max, "RiskRule.values": L.risk_list_items_max,
    "ListReviewsResponse.reviews": L.reviews_page_max,
    "ListSkusResponse.skus": None,  # as many of the largest SKU as a page's bytes allow
    "Supplier.routes": L.routes_per_supplier_max,
    "ListSuppliersResponse.suppliers": None,
    "GetSupplierStatsResponse.skus": L.supplier_stats_skus_listed_max,
    "SupplierSkuStats.batches": L.supplier_stats_batches_listed_max,
    "WatchEventsResponse.events": L.watch_buffered_events_max,
    "Webhook.event_types": L.webhook_event_types_max,
    "ListWebhooksResponse.webhooks": L.webhooks_per_page_max,
    **{f"{reply}.{field}": L.report_rows_per_reply_max for reply, field in (
        ("SalesReportResponse", "rows"), ("SupplierStatementResponse", "rows"),
        ("SupplierStatementResponse", "flagged"), ("StockValuationResponse", "batches"),
        ("StockExpiringResponse", "batches"), ("RedemptionsByTerminalResponse", "rows"),
        ("RiskDecisionsResponse", "rows"))},
    "ListReconciliationsResponse.reconciliations": L.reconciliations_per_page_max,
    "GetReconciliationResponse.lines": L.reconciliation_lines_per_page_max,
}
PAGE_BYTES = {"ListSkusResponse.skus": L.skus_page_bytes_max,  # the pages' bounds
              "ListSuppliersResponse.suppliers": L.suppliers_page_bytes_max}
MODEL = {  # method -> the reply of kamicore.limits.reply_bytes_worst that bounds it
    "CreateSku": "Catalog/CreateSku", "GetSku": "Catalog/CreateSku",
    "UpdateSku": "Catalog/CreateSku", "ListSkus": "Catalog/ListSkus",
    "ImportCodes": "Inventory/ImportCodes", "GetStock": "Inventory/GetStock",
    "FreezeCodes": "Inventory/FreezeCodes", "UnfreezeCodes": "Inventory/FreezeCodes",
    "VoidCodes": "Inventory/FreezeCodes", "RotateKeys": "Inventory/RotateKeys",
    "CreateOrder": "Orders/CreateOrder", "ConfirmPayment": "Orders/ConfirmPayment",
    "CancelOrder": "Orders/ConfirmPayment", "GetOrder": "Orders/ConfirmPayment",
    "GetDelivery": "Orders/ConfirmPayment", "ReportInvalidCode": "Orders/ReportInvalidCode",
    "Redeem": "Redemption/Redeem", "RedeemStream": "Redemption/Redeem",
    "RedeemBatch": "Redemption/RedeemBatch", "VerifyCode": "Redemption/VerifyCode",
    "UnlockTerminal": "Redemption/UnlockTerminal",
    "GetRiskRules": "Risk/GetRiskRules", "SetRiskRules": "Risk/SetRiskRules",
    "ListReviews": "Risk/ListReviews", "DecideReview": "Risk/DecideReview",
    "RegisterSupplier": "Suppliers/RegisterSupplier",
    "UpdateSupplier": "Suppliers/RegisterSupplier",
    "SupplierCallback": "Suppliers/SupplierCallback",
    "ListSuppliers": "Suppliers/ListSuppliers", "GetSupplierStats": "Suppliers/GetSupplierStats",
    "WatchEvents": "Events/WatchEvents",
    "RegisterWebhook": "Webhooks/RegisterWebhook", "UpdateWebhook": "Webhooks/RegisterWebhook",
    "ListWebhooks": "Webhooks/ListWebhooks", "DeleteWebhook": "Webhooks/DeleteWebhook",
    **{method: f"Reports/{method}" for method in (
        "SalesReport", "SupplierStatement", "StockValuation", "RedemptionsByTerminal",
        "RiskDecisions", "ReconcileSettlement", "ListReconciliations", "GetReconciliation")},
    "StockExpiring": "Reports/StockValuation",
}
LONGEST_VARINT = {  # the value of each scalar type whose encoding is longest
    FieldDescriptor.TYPE_INT64: -1, FieldDescriptor.TYPE_UINT64: 2**64 - 1,
    FieldDescriptor.TYPE_INT32: -1, FieldDescriptor.TYPE_UINT32: 2**32 - 1,
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_DOUBLE: 1.0,  # fixed: 8 bytes, whatever the value
}


def _largest(message_class):
    """An instance of `message_class` with every field at its limit."""
    message = message_class()
    descriptor = message.DESCRIPTOR
    assert not descriptor.oneofs, f"{descriptor.name}: a oneof needs its largest member here"
    for field in descriptor.fields:
        key = f"{descriptor.name}.{field.name}"
        repeated = field.is_repeated
        assert not repeated or key in ITEMS, f"{key}: give the most items of this list"
        count = ITEMS.get(key, 1) if repeated else 1
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            item = _largest(field.message_type._concrete_class)
            if count is None:  # a page: items while their bytes fit
                count = PAGE_BYTES[key] // L.length_delimited_bytes(item.ByteSize())
            if repeated:
                getattr(message, field.name).extend([item] * count)
            else:
                getattr(message, field.name).CopyFrom(item)
            continue
        if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
            assert key in TEXT_BYTES, f"{key}: give the most bytes of this text"
            value = "x" * TEXT_BYTES[key]
            if field.type == FieldDescriptor.TYPE_BYTES:
                value = value.encode()
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = max(number.number for number in field.enum_type.values)
        else:
            assert field.type in LONGEST_VARINT, f"{key}: a type the model does not know"
            value = LONGEST_VARINT[field.type]
        if repeated:
            getattr(message, field.name).extend([value] * count)
        else:
            setattr(message, field.name, value)
    return message


MODULES = (catalog_pb2, events_pb2, inventory_pb2, orders_pb2, redemption_pb2, reports_pb2,
           risk_pb2, suppliers_pb2, webhooks_pb2)
METHODS = [(service.name, method) for module in MODULES
           for service in module.DESCRIPTOR.services_by_name.values()
           for method in service.methods]


def test_every_method_of_every_service_is_modelled():
    assert {f"kamicore.v1.{service}" for service, _ in METHODS} == set(SERVICE_NAMES)
    assert {method.name for _, method in METHODS} == set(MODEL)
    assert set(MODEL.values()) == set(L.reply_bytes_worst)


@pytest.mark.parametrize("service, method", METHODS,
                         ids=[f"{service}/{method.name}" for service, method in METHODS])
def test_the_largest_reply_stays_within_its_bound(service, method):
    reply = _largest(_message_classes()[method.output_type.full_name])
    bound = L.reply_bytes_worst[MODEL[method.name]]
    assert reply.ByteSize() <= bound, f"{method.name}: {reply.ByteSize()} > {bound} bytes"
    assert bound <= L.reply_bytes_max - L.reply_margin_bytes


def test_the_model_counts_every_code_state():
    assert len(common_pb2.CodeState.values()) == len(CodeState) + 1 <= L.code_states_max


@pytest.mark.parametrize("code", [
    "x" * L.code_bytes_max,
    "x" * (L.code_bytes_max - 16) + "\U0001F600" * 4,  # the visible end at 4 bytes a character
    "\U0001F600" * (L.code_bytes_max // 4),
    "é" * (L.code_bytes_max // 2),
    "ab\U0001F600", "a", "abcdefgh",
])
def test_a_masked_code_is_never_longer_than_the_longest_code(code):
    codec = load_implementation("compiled").codec
    assert len(code.encode()) <= L.code_bytes_max
    assert len(codec.mask_code(code.encode()).encode()) <= L.code_bytes_max


def test_the_server_refuses_a_message_limit_below_the_largest_reply():
    with pytest.raises(ValueError, match="message_bytes_max"):
        config.load(overrides={"message_bytes_max": L.reply_bytes_max - 1})
    assert config.load(overrides={"message_bytes_max": L.reply_bytes_max}).message_bytes_max \
        == L.reply_bytes_max
