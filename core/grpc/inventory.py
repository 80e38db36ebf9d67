"""kamicore.v1.Inventory: import code batches, stock, freeze, unfreeze, void, key rotation."""

from __future__ import annotations

import logging

from .. import limits
from ..domain.imports import ImportProgress, ImportStream, refusal
from ..engine import InvalidArgument
from ..engine.validate import text
from ..statuses import RotateKeysStatus, StockStatus
from ..v1 import inventory_pb2, inventory_pb2_grpc
from .gate import PermissionDenied, actor, principal
from .services import Services
from .views import stock_seen_by
from .wire import IMPORT_HEADER_FIELDS, field_names

log = logging.getLogger("kamicore")


def _chunk_problem(message) -> str:
    """What is wrong with a message after the header, "field: what is wrong"; "" if nothing."""
    if not message.HasField("chunk"):
        return "chunk: every message after the header is a chunk"
    if len(message.chunk.codes) > limits.codes_per_chunk_max:
        return f"chunk.codes: has more than {limits.codes_per_chunk_max} codes"
    return ""


def _clipped(text: str, bytes_max: int) -> str:
    """`text` cut to at most `bytes_max` bytes of UTF-8, never inside a character."""
    return text.encode()[:bytes_max].decode("utf-8", "ignore")


class InventoryService(inventory_pb2_grpc.InventoryServicer):
    def __init__(self, services: Services):
        self.s = services

    async def ImportCodes(self, request_iterator, context):
        """Resumable (see kamicore.domain.imports): the header is checked first; then each
        chunk is checked as it arrives and committed in order, in bounded groups, so a stream
        of any length holds one group in memory. A bad chunk stops the import with an answer
        that says how far it got; a re-sent stream counts what landed as duplicates."""
        messages = aiter(request_iterator)
        header = await self._read_header(messages)
        self._check_header(header)
        self._authorize_import(header)
        refused = refusal(self.s.catalog, header.sku_id)
        if refused is not None:
            return self._import_answer(ImportProgress(refused), "")
        stream = ImportStream(
            self.s.api, header.sku_id, header.batch_id,
            {"supplier": header.supplier_id, "unit_cost_micros": header.unit_cost_micros,
             "valid_from_ms": header.valid_from_ms,
             "valid_until_ms": header.valid_until_ms or None}, actor())
        while True:
            try:
                message = await anext(messages)
            except StopAsyncIteration:
                return self._import_answer(await stream.finish(), "")
            except InvalidArgument as error:  # a message that does not decode
                return self._import_answer(await stream.stop_at_invalid_chunk(), str(error))
            problem = _chunk_problem(message)
            if problem:
                return self._import_answer(await stream.stop_at_invalid_chunk(), problem)
            if not await stream.add(message.chunk.codes):
                return self._import_answer(stream.progress, "")

    @staticmethod
    async def _read_header(messages) -> inventory_pb2.ImportHeader:
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument("header", "is required") from None
        if not first.HasField("header"):
            raise InvalidArgument("header", "the first message must be the header")
        return first.header

    def _import_answer(self, progress: ImportProgress,
                       invalid_chunk: str) -> inventory_pb2.ImportCodesResponse:
        self.s.outcome("ImportCodes", progress.status)
        response = inventory_pb2.ImportCodesResponse(
            status=progress.status, imported=progress.imported,
            duplicates=progress.duplicates, rejected=progress.rejected,
            rows_processed=progress.rows_processed,
            invalid_chunk=_clipped(invalid_chunk, limits.error_bytes_max))
        for row, status in progress.rejected_rows:
            response.rejected_rows.add(row=row, status=status)
        return response

    def _check_header(self, header) -> None:
        """Every header field, named as the proto names it."""
        with field_names(IMPORT_HEADER_FIELDS):
            self.s.engine.check_import_terms(
                header.sku_id, header.batch_id, header.supplier_id, header.unit_cost_micros,
                header.valid_from_ms, header.valid_until_ms or None)

    def _authorize_import(self, header) -> None:
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
            raise PermissionDenied("header.supplier_id", (
                "a supplier key imports only as its own supplier "
                f"({caller.binding!r}); leave it empty or name that one"))
        sku = self.s.catalog.get(header.sku_id)
        if sku is not None and caller.binding not in sku.supplier_ids:
            raise PermissionDenied("header.sku_id", (
                f"SKU {header.sku_id!r} does not list supplier "
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
        results = await operation(refs, actor=actor())
        # once it is done (a refused call is the gate's to log); the reason is never logged: it
        # may quote a code
        log.info("%s by %s: %d codes", name, actor(), len(refs))
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
