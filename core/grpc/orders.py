"""kamicore.v1.Orders: create, pay, cancel and read orders; delivery; invalid-code reports."""

from __future__ import annotations

from .. import limits
from ..domain import code_purchases, ledger, order_requests, refunds
from ..engine.validate import integer, text
from ..statuses import (
    CancelOrderStatus, ConfirmPaymentStatus, CreateOrderStatus, OrderLookupStatus, OrderState,
    ReportInvalidStatus,
)
from ..v1 import orders_pb2, orders_pb2_grpc
from .gate import actor, principal
from .risk import assessment_to_wire
from . import purchases, topups
from .services import Services
from .wire import order_to_wire


TOPUP_ANSWERS = (ConfirmPaymentStatus.FULFILLED, ConfirmPaymentStatus.PENDING,
                 ConfirmPaymentStatus.FAILED_REFUND_REQUIRED)


class OrdersService(orders_pb2_grpc.OrdersServicer):
    def __init__(self, services: Services):
        self.s = services

    def _order_id(self, order_id: str) -> str | None:
        """The order id if this caller may see it (admins see every order)."""
        text(order_id, "order_id", limits.order_id_bytes_max)
        caller = principal()
        mine = caller.role == "admin" or order_requests.owns(caller.owner, order_id)
        return order_id if mine else None

    def _order(self, order_id: str, reveal: bool, codes_offset: int = 0,
               codes_max: int = limits.codes_per_reply_max) -> orders_pb2.Order | None:
        """The order with `codes_max` of its codes from `codes_offset` on: every reply stays
        within its bound (kamicore.limits) however many codes replacements added."""
        meta = self.s.orders.meta(order_id)
        if meta is not None and "topup" in meta:
            return topups.order_to_wire(order_id, meta, self.s.orders.attempts(meta))
        view = self.s.engine.order(order_id, reveal=reveal, codes_offset=codes_offset,
                                   codes_max=codes_max)
        if view is None and code_purchases.is_purchase(meta):  # its codes not bought yet
            return purchases.undelivered_to_wire(order_id, meta,
                                                 code_purchases.attempts_of(self.s.engine, meta))
        if view is None or meta is None:
            return None
        order = order_to_wire(order_id, view, meta)
        if code_purchases.is_purchase(meta):  # delivered: its codes, and how they were bought
            purchases.add_purchase(order, meta, code_purchases.attempts_of(self.s.engine, meta))
        return order

    async def CreateOrder(self, request, context):
        caller = principal()
        buyer = request.buyer
        checked = order_requests.validate_create(order_requests.OrderRequest(
            request.idempotency_key, buyer.account_id, buyer.ip, buyer.device_id,
            [(line.sku_id, line.quantity) for line in request.lines], request.hold_seconds,
            buyer.phone_bound, buyer.account_created_ms, tuple(request.verifications_passed),
            request.recipient),
            self.s.config.hold_seconds_default)
        if request.dry_run:
            status, assessment = self.s.orders.dry_run(caller.owner, caller.channel, checked)
        else:
            order_id = order_requests.order_id_for(caller.owner, request.idempotency_key)
            status, _, assessment = await self.s.orders.create(
                order_id, caller.owner, caller.channel, checked, actor())
        self.s.outcome("CreateOrder", status)
        response = orders_pb2.CreateOrderResponse(status=status)
        if assessment is not None:
            self.s.metrics.risk(assessment, dry_run=request.dry_run)
            response.risk.CopyFrom(assessment_to_wire(assessment))
        if status in (CreateOrderStatus.CREATED, CreateOrderStatus.IN_REVIEW):
            response.order.CopyFrom(self._order(order_id, reveal=False))
        return response

    async def ConfirmPayment(self, request, context):
        order_requests.validate_reference(request.payment_reference)
        text(request.payment_provider, "payment_provider", limits.payment_provider_bytes_max,
             required=False)
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.ConfirmPaymentResponse(status=ConfirmPaymentStatus.ORDER_NOT_FOUND)
        # a top-up order's first supplier call is awaited here (never blocking the worker)
        status, late = await self.s.topups.confirm_payment(
            order_id, request.payment_reference, request.amount.currency,
            request.amount.amount_micros, actor(),
            request.payment_provider or ledger.DEFAULT_PROVIDER)
        self.s.outcome("ConfirmPayment", status)
        response = orders_pb2.ConfirmPaymentResponse(status=status, late=late)
        if status in (ConfirmPaymentStatus.PAID, *TOPUP_ANSWERS):
            # bought codes were delivered unseen: shown only with a PAID answer, as an audited
            # reveal (then no longer refundable); nothing is shown when it cannot be audited
            reveal = (not code_purchases.is_purchase(self.s.orders.meta(order_id))
                      or status == ConfirmPaymentStatus.PAID
                      and await self.s.orders.audit_reveal(order_id, actor()))
            response.order.CopyFrom(self._order(order_id, reveal=reveal))
        return response

    async def CancelOrder(self, request, context):
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.CancelOrderResponse(status=CancelOrderStatus.ORDER_NOT_FOUND)
        status = await self.s.orders.cancel(order_id, actor())
        self.s.outcome("CancelOrder", status)
        return orders_pb2.CancelOrderResponse(status=status)

    async def GetOrder(self, request, context):
        order_id = self._order_id(request.order_id)
        order = (self._order(order_id, reveal=False, codes_offset=request.codes_offset)
                 if order_id else None)
        if order is None:
            return orders_pb2.GetOrderResponse(status=OrderLookupStatus.NOT_FOUND)
        return orders_pb2.GetOrderResponse(status=OrderLookupStatus.FOUND, order=order)

    async def GetDelivery(self, request, context):
        order_id = self._order_id(request.order_id)
        masked = self._order(order_id, reveal=False, codes_max=0) if order_id else None
        if masked is None:
            return orders_pb2.GetDeliveryResponse(status=OrderLookupStatus.NOT_FOUND)
        if masked.state != OrderState.PAID:
            return orders_pb2.GetDeliveryResponse(status=OrderLookupStatus.NOT_PAID)
        # audited before anything is shown; nothing is shown when it cannot be audited
        if not await self.s.orders.audit_reveal(order_id, actor()):
            return orders_pb2.GetDeliveryResponse(status=OrderLookupStatus.STORAGE_FULL)
        return orders_pb2.GetDeliveryResponse(
            status=OrderLookupStatus.FOUND,
            order=self._order(order_id, reveal=True, codes_offset=request.codes_offset))

    async def ReportInvalidCode(self, request, context):
        integer(request.code_id, "code_id", 1, 2**63)
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.ReportInvalidCodeResponse(
                status=ReportInvalidStatus.ORDER_NOT_FOUND)
        # one commit: the code INVALID, its replacement sold, its cost charged to its batch's
        # supplier in the ledger and the supplier's statistics (GetSupplierStats)
        status, replacement_code_id = await refunds.report_invalid_code(
            self.s.engine, order_id, request.code_id, actor())
        response = orders_pb2.ReportInvalidCodeResponse(status=status)
        if replacement_code_id:  # shown alone, wherever it sits in a large order
            position = self.s.engine.order(order_id, codes_max=0).code_ids.index(
                replacement_code_id)
            [replacement] = self._order(order_id, reveal=True, codes_offset=position,
                                        codes_max=1).codes
            response.replacement.CopyFrom(replacement)
        self.s.outcome("ReportInvalidCode", status)
        return response
