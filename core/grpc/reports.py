"""kamicore.v1.Reports: operators' reports and settlement reconciliation (the domain's
kamicore.domain.reports and kamicore.domain.reconciliation, encoded here)."""

from __future__ import annotations

from .. import limits
from ..domain import reconciliation, reports
from ..statuses import ReconciliationOutcome, ReconciliationLookupStatus
from ..v1 import common_pb2, reports_pb2, reports_pb2_grpc
from .gate import actor
from .services import Services

_COUNTS = {"matched": reconciliation.MATCHED, "amount_mismatch": reconciliation.AMOUNT_MISMATCH,
           "missing_in_kamicore": reconciliation.MISSING_IN_KAMICORE,
           "missing_in_file": reconciliation.MISSING_IN_FILE,
           "duplicate_payment": reconciliation.DUPLICATE_PAYMENT}


def run_to_wire(run: dict | None) -> reports_pb2.Reconciliation | None:
    if run is None:
        return None
    return reports_pb2.Reconciliation(
        run_id=run["run_id"], sha256=run["sha256"], provider=run["provider"],
        created_ms=run["created_ms"], from_ms=run["from_ms"], to_ms=run["to_ms"],
        lines=run["lines"], **{field: run["counts"][status] for field, status in _COUNTS.items()})


def line_to_wire(line: dict) -> reports_pb2.ReconciliationLine:
    message = reports_pb2.ReconciliationLine(
        number=line["number"], status=ReconciliationOutcome[line["status"]],
        file_line=line["line"], payment_reference=line["payment_reference"],
        order_id=line["order_id"], time_ms=line["time_ms"])
    if line["status"] != reconciliation.MISSING_IN_FILE:
        message.file_amount.CopyFrom(common_pb2.Money(currency=line["currency"],
                                                      amount_micros=line["file_amount_micros"]))
    if line["booked_currency"]:
        message.booked_amount.CopyFrom(common_pb2.Money(
            currency=line["booked_currency"], amount_micros=line["booked_amount_micros"]))
    return message


def _page_size(requested: int, most: int) -> int:
    return requested if 0 < requested <= most else most


class ReportsService(reports_pb2_grpc.ReportsServicer):
    def __init__(self, services: Services):
        self.s = services
        self.engine = services.engine

    def _period(self, request) -> tuple[int, int]:
        return reports.period(request.period.from_ms, request.period.to_ms, self.engine.now_ms())

    async def SalesReport(self, request, context):
        rows, cursor = reports.sales(self.engine, *self._period(request), request.cursor)
        return reports_pb2.SalesReportResponse(
            rows=[reports_pb2.SalesRow(**row) for row in rows], next_cursor=cursor)

    async def SupplierStatement(self, request, context):
        rows, flagged, cursor = reports.supplier_statement(
            self.engine, *self._period(request), request.supplier_id, request.cursor)
        return reports_pb2.SupplierStatementResponse(
            rows=[reports_pb2.SupplierStatementRow(**row) for row in rows],
            flagged=[reports_pb2.FlaggedAttempt(**attempt) for attempt in flagged],
            next_cursor=cursor)

    async def StockValuation(self, request, context):
        rows, cursor = reports.stock_valuation(self.engine, request.cursor)
        return reports_pb2.StockValuationResponse(
            batches=[reports_pb2.BatchValue(**row) for row in rows], next_cursor=cursor)

    async def StockExpiring(self, request, context):
        rows, cursor = reports.stock_expiring(self.engine, request.within_days, request.cursor)
        return reports_pb2.StockExpiringResponse(
            batches=[reports_pb2.BatchValue(**row) for row in rows], next_cursor=cursor)

    async def RedemptionsByTerminal(self, request, context):
        rows, cursor = reports.redemptions(self.engine, *self._period(request), request.cursor)
        return reports_pb2.RedemptionsByTerminalResponse(
            rows=[reports_pb2.TerminalRedemptions(**row) for row in rows], next_cursor=cursor)

    async def RiskDecisions(self, request, context):
        rows, cursor = reports.risk_decisions(self.engine, *self._period(request),
                                              request.cursor)
        return reports_pb2.RiskDecisionsResponse(
            rows=[reports_pb2.RiskDecisionRow(**row) for row in rows], next_cursor=cursor)

    async def ReconcileSettlement(self, request, context):
        status, run = await reconciliation.reconcile(self.engine, request.csv, request.provider,
                                                     actor())
        self.s.outcome("ReconcileSettlement", status)
        return reports_pb2.ReconcileSettlementResponse(status=status,
                                                       reconciliation=run_to_wire(run))

    async def ListReconciliations(self, request, context):
        found = reconciliation.runs(self.engine, request.after_run_id, _page_size(
            request.page_size, limits.reconciliations_per_page_max))
        return reports_pb2.ListReconciliationsResponse(
            reconciliations=[run_to_wire(run) for run in found])

    async def GetReconciliation(self, request, context):
        run = reconciliation.run(self.engine, request.run_id)
        if run is None:
            return reports_pb2.GetReconciliationResponse(
                status=ReconciliationLookupStatus.NOT_FOUND)
        found = reconciliation.lines(self.engine, request.run_id, max(request.after_line, 0),
                                     _page_size(request.page_size,
                                                limits.reconciliation_lines_per_page_max))
        return reports_pb2.GetReconciliationResponse(
            status=ReconciliationLookupStatus.FOUND, reconciliation=run_to_wire(run),
            lines=[line_to_wire(line) for line in found])
