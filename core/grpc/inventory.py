"""kamicore.v1.Inventory: import code batches, stock, freeze, unfreeze, void, key rotation."""

from __future__ import annotations

import logging

import grpc

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import text
from ..statuses import ImportStatus, RotateKeysStatus, StockStatus
from ..v1 import inventory_pb2, inventory_pb2_grpc
from .gate import actor, principal
from .services import Services
from .views import stock_seen_by
from .wire import IMPORT_HEADER_FIELDS, field_names

log = logging.getLogger("kamicore")


class InventoryService(inventory_pb2_grpc.InventoryServicer):
    def __init__(self, services: Services):
        self.s = services

    async def ImportCodes(self, request_iterator, context):
        """The whole stream is read and checked before anything is imported, so bad input
        changes nothing; then chunks commit in order (a re-sent stream skips what landed)."""
        header, chunks = await self._read_import(request_iterator)
        await self._authorize_import(header, context)
        response = inventory_pb2.ImportCodesResponse(status=ImportStatus.OK)
        if self.s.catalog.get(header.sku_id) is None:
            response.status = ImportStatus.SKU_NOT_FOUND
            return response
        row = 0
        for codes in chunks:
            with field_names(IMPORT_HEADER_FIELDS):
                result = await self.s.api.import_codes(
                    header.sku_id, header.batch_id, codes, supplier=header.supplier_id,
                    unit_cost_micros=header.unit_cost_micros,
                    valid_from_ms=header.valid_from_ms,
                    valid_until_ms=header.valid_until_ms or None, actor=actor())
            if result.status != ImportStatus.OK:
                response.status = result.status
                break
            response.imported += result.imported
            response.duplicates += result.duplicates
            response.rejected += len(result.rejected)
            for index, status in result.rejected:
                if len(response.rejected_rows) < limits.rejected_rows_listed_max:
                    response.rejected_rows.add(row=row + index, status=status)
            row += len(codes)
        self.s.outcome("ImportCodes", ImportStatus(response.status))
        return response

    async def _read_import(self, request_iterator):
        header, chunks, total = None, [], 0
        async for message in request_iterator:
            if header is None:
                if not message.HasField("header"):
                    raise InvalidArgument("header", "the first message must be the header")
                header = message.header
                self._check_header(header)
                continue
            if not message.HasField("chunk"):
                raise InvalidArgument("chunk", "every message after the header is a chunk")
            codes = list(message.chunk.codes)
            if len(codes) > limits.codes_per_chunk_max:
                raise InvalidArgument("chunk.codes",
                                      f"has more than {limits.codes_per_chunk_max} codes")
            total += len(codes)
            if total > limits.codes_per_import_stream_max:
                raise InvalidArgument("chunk.codes", f"more than "
                                      f"{limits.codes_per_import_stream_max} codes in one "
                                      "stream; split it")
            if codes:
                chunks.append(codes)
        if header is None:
            raise InvalidArgument("header", "is required")
        return header, chunks

    def _check_header(self, header) -> None:
        """Every header field, named as the proto names it."""
        with field_names(IMPORT_HEADER_FIELDS):
            self.s.engine.check_import_terms(
                header.sku_id, header.batch_id, header.supplier_id, header.unit_cost_micros,
                header.valid_from_ms, header.valid_until_ms or None)

    async def _authorize_import(self, header, context) -> None:
        """A supplier key imports only as its own supplier (an empty supplier_id means that
        one) and only into SKUs whose supplier_ids list it; otherwise PERMISSION_DENIED before
        anything is imported. Admin keys import for any supplier. A SKU that does not exist
        is left to answer SKU_NOT_FOUND, as it does for admins (GetStock tells anyone that)."""
        caller = principal()
        if caller.role != "supplier":
            return
        if not header.supplier_id:
            header.supplier_id = caller.binding
        if header.supplier_id != caller.binding:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, (
                "header.supplier_id: a supplier key imports only as its own supplier "
                f"({caller.binding!r}); leave it empty or name that one"))
        sku = self.s.catalog.get(header.sku_id)
        if sku is not None and caller.binding not in sku.supplier_ids:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, (
                f"header.sku_id: SKU {header.sku_id!r} does not list supplier "
                f"{caller.binding!r} in its supplier_ids; an admin adds it with UpdateSku"))

    async def GetStock(self, request, context):
        text(request.sku_id, "sku_id", limits.name_bytes_max)
        stock = self.s.engine.stock(request.sku_id)
        sku = self.s.catalog.get(request.sku_id) if stock is not None else None
        if stock is None or sku is None:
            return inventory_pb2.GetStockResponse(status=StockStatus.NOT_FOUND)
        return stock_seen_by(principal(), sku, stock,
                             lambda: self.s.engine.batch_stock(request.sku_id))

    async def _code_op(self, operation, request, name: str):
        refs = []
        for index, ref in enumerate(request.codes):
            kind = ref.WhichOneof("ref")
            if kind is None:
                raise InvalidArgument(f"codes[{index}]", "needs code_id or code")
            refs.append(ref.code_id if kind == "code_id" else ref.code)
        # the reason is never logged: it may quote a code
        log.info("%s by %s: %d codes", name, actor(), len(refs))
        results = await operation(refs, actor=actor())
        return inventory_pb2.CodeOpResponse(results=[
            inventory_pb2.CodeOpResult(status=result.status, code_id=result.code_id,
                                       state=result.state or 0) for result in results])

    async def FreezeCodes(self, request, context):
        return await self._code_op(self.s.api.freeze, request, "freeze")

    async def UnfreezeCodes(self, request, context):
        return await self._code_op(self.s.api.unfreeze, request, "unfreeze")

    async def VoidCodes(self, request, context):
        return await self._code_op(self.s.api.void, request, "void")

    async def RotateKeys(self, request, context):
        count = await self.s.api.rotate_keys(actor=actor())
        if count is None:
            return inventory_pb2.RotateKeysResponse(status=RotateKeysStatus.STORAGE_FULL)
        return inventory_pb2.RotateKeysResponse(status=RotateKeysStatus.ROTATED,
                                                rewrapped_batches=count)
