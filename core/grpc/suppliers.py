"""kamicore.v1.Suppliers: register, update and list suppliers; their statistics. A supplier's
signing secret goes in and never comes out: every reply is built by supplier_to_wire, which has
no secret to copy (the domain answers carry none)."""

from __future__ import annotations

from .. import limits
from ..domain import supplier_stats, suppliers
from ..domain.suppliers import Route, Supplier
from ..statuses import SupplierLookupStatus, SupplierProtocol
from ..v1 import common_pb2, suppliers_pb2, suppliers_pb2_grpc
from . import topups
from .gate import actor
from .services import Services

_PROTOCOLS = {SupplierProtocol.GRPC: "grpc", SupplierProtocol.HTTP_JSON: "http"}
_PROTOCOL_NUMBERS = {name: number for number, name in _PROTOCOLS.items()}


def supplier_from_wire(message: suppliers_pb2.Supplier) -> Supplier:
    """A request's supplier; an unknown protocol becomes "" (refused by name by validate)."""
    return Supplier(
        supplier_id=message.supplier_id, name=message.name,
        protocol=_PROTOCOLS.get(message.protocol, ""), address=message.address,
        timeout_ms=message.timeout_ms, enabled=message.enabled,
        secret=message.signing_secret,
        routes=tuple(Route(sku_id=route.sku_id, supplier_id=message.supplier_id,
                           product=route.product, cost_micros=route.cost.amount_micros,
                           currency=route.cost.currency, priority=route.priority,
                           enabled=route.enabled)
                     for route in message.routes))


def supplier_to_wire(supplier: Supplier | None) -> suppliers_pb2.Supplier | None:
    """A supplier as replies show it: never with its secret."""
    if supplier is None:
        return None
    return suppliers_pb2.Supplier(
        supplier_id=supplier.supplier_id, name=supplier.name,
        protocol=_PROTOCOL_NUMBERS[supplier.protocol], address=supplier.address,
        timeout_ms=supplier.timeout_ms, enabled=supplier.enabled,
        routes=[suppliers_pb2.SupplierRoute(
            sku_id=route.sku_id, product=route.product,
            cost=common_pb2.Money(currency=route.currency, amount_micros=route.cost_micros),
            priority=route.priority, enabled=route.enabled) for route in supplier.routes],
        created_ms=supplier.created_ms, updated_ms=supplier.updated_ms)


def sku_stats_to_wire(stats: supplier_stats.SkuStats) -> suppliers_pb2.SupplierSkuStats:
    return suppliers_pb2.SupplierSkuStats(
        sku_id=stats.sku_id, attempts=stats.attempts, successes=stats.successes,
        failures=stats.failures, unknown_outcomes=stats.unknown, not_found=stats.not_found,
        success_rate=stats.success_rate, latency_p50_ms=stats.latency_p50_ms,
        latency_p90_ms=stats.latency_p90_ms, latency_p99_ms=stats.latency_p99_ms,
        late_callbacks=stats.late_callbacks,
        cost_total=common_pb2.Money(currency=stats.currency, amount_micros=stats.cost_micros),
        batches=[suppliers_pb2.BatchInvalidCodes(
            batch_id=batch.batch_id, invalid_codes=batch.invalid_codes,
            delivered_codes=batch.delivered_codes, invalid_rate=batch.invalid_rate)
            for batch in stats.batches],
        batches_omitted=stats.batches_omitted)


class SuppliersService(suppliers_pb2_grpc.SuppliersServicer):
    def __init__(self, services: Services):
        self.s = services
        self.suppliers = suppliers.Suppliers(services.engine)

    async def RegisterSupplier(self, request, context):
        status, supplier, sku_id = await self.suppliers.register_async(
            supplier_from_wire(request.supplier), actor())
        self.s.outcome("RegisterSupplier", status)
        return suppliers_pb2.RegisterSupplierResponse(
            status=status, supplier=supplier_to_wire(supplier), sku_id=sku_id)

    async def UpdateSupplier(self, request, context):
        status, supplier, sku_id = await self.suppliers.update_async(
            supplier_from_wire(request.supplier), actor())
        self.s.outcome("UpdateSupplier", status)
        return suppliers_pb2.UpdateSupplierResponse(
            status=status, supplier=supplier_to_wire(supplier), sku_id=sku_id)

    async def ListSuppliers(self, request, context):
        """page_size suppliers, or fewer when more would pass limits.suppliers_page_bytes_max:
        then the token continues after the last one listed."""
        found, token = suppliers.page(self.s.engine, request.page_size, request.page_token)
        page, page_bytes = [], 0
        for supplier in found:
            message = supplier_to_wire(supplier)
            page_bytes += limits.length_delimited_bytes(message.ByteSize())
            if page_bytes > limits.suppliers_page_bytes_max:
                token = page[-1].supplier_id  # never the first: one always fits (limits)
                break
            page.append(message)
        return suppliers_pb2.ListSuppliersResponse(suppliers=page, next_page_token=token)

    async def SupplierCallback(self, request, context):
        status = await topups.supplier_callback(self.s.callbacks, request)
        self.s.outcome("SupplierCallback", status)
        return suppliers_pb2.SupplierCallbackResponse(status=status)

    async def GetSupplierStats(self, request, context):
        report = supplier_stats.report(self.s.engine, request.supplier_id, request.sku_id)
        if report is None:
            return suppliers_pb2.GetSupplierStatsResponse(status=SupplierLookupStatus.NOT_FOUND)
        return suppliers_pb2.GetSupplierStatsResponse(
            status=SupplierLookupStatus.FOUND, circuit=report.circuit,
            circuit_open_until_ms=report.open_until_ms,
            consecutive_failures=report.consecutive_failures,
            skus=[sku_stats_to_wire(stats) for stats in report.skus],
            skus_omitted=report.skus_omitted)
