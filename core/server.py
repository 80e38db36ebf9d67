"""The gRPC server: a supervisor and N worker processes sharing one port and one data dir.

- The supervisor opens the data dir (first-start admin key, the hold sweeper, the Prometheus
  endpoint with stock gauges), starts the workers and restarts one that dies.
- Each worker opens the data dir itself after it starts, binds the same host:port with
  SO_REUSEPORT and serves the four kamicore.v1 services plus health and reflection.
- Handlers are thin: validate, one engine call, map the status, reply. An interceptor does
  authentication, role checks, the in-flight limit and metrics for every call.
- SIGTERM: health goes NOT_SERVING, new calls are refused, in-flight calls finish (up to the
  grace period), the pending group commit lands, every process exits 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import grpc

from . import auth, catalog as catalog_module, metrics, orders
from .config import Config
from ._codec import name_bytes_max, order_id_bytes_max, request_id_bytes_max
from .engine import AsyncEngine, Engine, InvalidArgument, _integer, _text, codes_per_batch_max
from .v1 import (
    catalog_pb2, catalog_pb2_grpc, common_pb2, inventory_pb2, inventory_pb2_grpc, orders_pb2,
    orders_pb2_grpc, redemption_pb2, redemption_pb2_grpc,
)

log = logging.getLogger("kamicore")

codes_per_chunk_max = 10_000
codes_per_import_stream_max = 1_000_000  # read and checked whole before anything is imported
rejected_rows_listed_max = 10_000
stream_redemptions_in_flight_max = 256  # per RedeemStream: requests read ahead of answers
worker_restart_delay_seconds = 1.0
sweep_batch_orders = 1_000
SERVICE_NAMES = ("kamicore.v1.Catalog", "kamicore.v1.Inventory", "kamicore.v1.Orders",
                 "kamicore.v1.Redemption")

_principal: contextvars.ContextVar[auth.Principal] = contextvars.ContextVar("principal")


def principal() -> auth.Principal:
    return _principal.get()


# -- the interceptor --------------------------------------------------------------------------

class Gate(grpc.aio.ServerInterceptor):
    """Authentication, roles, the in-flight limit and metrics for every kamicore call."""

    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.authenticate = auth.Authenticator(engine)
        self.in_flight_max = config.in_flight_rpcs_max
        self.in_flight = 0
        self.metrics = worker_metrics

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(auth.PUBLIC_PREFIXES):
            return handler
        metadata = dict(details.invocation_metadata or ())
        header = metadata.get("authorization", "")
        caller = None
        if header.startswith("Bearer "):
            caller = self.authenticate(header[len("Bearer "):].strip())
        if caller is None:
            return self._refusal(handler, method, grpc.StatusCode.UNAUTHENTICATED,
                                 "a valid API key is required: authorization: Bearer <key>")
        if caller.role not in auth.METHOD_ROLES.get(method, ()):
            return self._refusal(handler, method, grpc.StatusCode.PERMISSION_DENIED,
                                 f"a {caller.role} key may not call {method}")
        return self._wrap(handler, method, caller)

    def _refusal(self, handler, method: str, code: grpc.StatusCode, message: str):
        async def refuse(request_or_iterator, context):
            self.metrics.rpc(method, code.name)
            await context.abort(code, message)
        return _same_kind(handler, refuse, refuse)

    def _wrap(self, handler, method: str, caller: auth.Principal):
        gate = self

        async def unary(request_or_iterator, context):
            async with _Admitted(gate, method, caller, context):
                behavior = handler.unary_unary or handler.stream_unary
                return await behavior(request_or_iterator, context)

        async def streaming(request_or_iterator, context):
            async with _Admitted(gate, method, caller, context):
                behavior = handler.unary_stream or handler.stream_stream
                async for response in behavior(request_or_iterator, context):
                    yield response

        return _same_kind(handler, unary, streaming)


class _Admitted:
    """One admitted call: counts toward the in-flight limit, runs as its caller, turns bad
    input into INVALID_ARGUMENT naming the field and a bug into INTERNAL, and is measured."""

    def __init__(self, gate: Gate, method: str, caller: auth.Principal, context):
        self.gate, self.method, self.caller, self.context = gate, method, caller, context
        self.code: str | None = None

    async def __aenter__(self):
        gate = self.gate
        if gate.in_flight >= gate.in_flight_max:
            gate.metrics.rpc(self.method, "RESOURCE_EXHAUSTED")
            await self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"more than {gate.in_flight_max} calls in flight; retry")
        gate.in_flight += 1
        _principal.set(self.caller)
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, kind, error, traceback):
        try:
            if isinstance(error, InvalidArgument):
                self.code = "INVALID_ARGUMENT"
                await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                self.code = "INTERNAL"
                log.exception("%s failed", self.method, exc_info=error)
                await self.context.abort(grpc.StatusCode.INTERNAL,
                                         "internal error; see server log")
        finally:
            self.gate.in_flight -= 1
            self.gate.metrics.rpc(self.method, self.code or _code_name(self.context),
                                  time.perf_counter() - self.started)
        return False


def _code_name(context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


def _same_kind(handler, unary_behavior, streaming_behavior):
    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_behavior, **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary_behavior, **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming_behavior, **options)
    return grpc.stream_stream_rpc_method_handler(streaming_behavior, **options)


def _actor() -> str:
    caller = principal()
    return f"{caller.role}:{caller.binding or caller.key_id}"[:64]


# -- services ---------------------------------------------------------------------------------

class Services:
    """State shared by the servicers of one worker."""

    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.engine = engine
        self.api = AsyncEngine(engine)
        self.catalog = catalog_module.Catalog(engine)
        self.config = config
        self.metrics = worker_metrics

    def outcome(self, method: str, status_name: str) -> None:
        self.metrics.outcome(method, status_name)


class CatalogService(catalog_pb2_grpc.CatalogServicer):
    def __init__(self, services: Services):
        self.s = services

    async def CreateSku(self, request, context):
        status, sku = await self.s.catalog.create_async(request.sku, _actor())
        self.s.outcome("CreateSku", catalog_pb2.CreateSkuStatus.Name(status))
        return catalog_pb2.CreateSkuResponse(status=status, sku=sku)

    async def GetSku(self, request, context):
        _text(request.sku_id, "sku_id", name_bytes_max)
        sku = self.s.catalog.get(request.sku_id)
        if sku is None:
            return catalog_pb2.GetSkuResponse(status=catalog_module.NOT_FOUND)
        return catalog_pb2.GetSkuResponse(status=catalog_module.FOUND, sku=sku)

    async def ListSkus(self, request, context):
        skus, token = self.s.catalog.list(request.page_size, request.page_token)
        return catalog_pb2.ListSkusResponse(skus=skus, next_page_token=token)

    async def UpdateSku(self, request, context):
        status, sku = await self.s.catalog.update_async(request.sku, _actor())
        return catalog_pb2.UpdateSkuResponse(status=status, sku=sku)


class InventoryService(inventory_pb2_grpc.InventoryServicer):
    def __init__(self, services: Services):
        self.s = services

    async def ImportCodes(self, request_iterator, context):
        """The whole stream is read and checked before anything is imported, so bad input
        changes nothing; then chunks commit in order (a re-sent stream skips what landed)."""
        header, chunks = await self._read_import(request_iterator)
        response = inventory_pb2.ImportCodesResponse(status=inventory_pb2.IMPORT_STATUS_OK)
        if self.s.catalog.get(header.sku_id) is None:
            response.status = inventory_pb2.IMPORT_STATUS_SKU_NOT_FOUND
            return response
        row = 0
        for codes in chunks:
            with _field_names(IMPORT_HEADER_FIELDS):
                result = await self.s.api.import_codes(
                    header.sku_id, header.batch_id, codes, supplier=header.supplier_id,
                    unit_cost_micros=header.unit_cost_micros,
                    valid_from_ms=header.valid_from_ms,
                    valid_until_ms=header.valid_until_ms or None, actor=_actor())
            if result.status != inventory_pb2.IMPORT_STATUS_OK:
                response.status = result.status
                break
            response.imported += result.imported
            response.duplicates += result.duplicates
            response.rejected += len(result.rejected)
            for index, status in result.rejected:
                if len(response.rejected_rows) < rejected_rows_listed_max:
                    response.rejected_rows.add(row=row + index, status=status)
            row += len(codes)
        self.s.outcome("ImportCodes", inventory_pb2.ImportStatus.Name(response.status))
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
            if len(codes) > codes_per_chunk_max:
                raise InvalidArgument("chunk.codes", f"has more than {codes_per_chunk_max} codes")
            total += len(codes)
            if total > codes_per_import_stream_max:
                raise InvalidArgument("chunk.codes", f"more than {codes_per_import_stream_max} "
                                      "codes in one stream; split it")
            if codes:
                chunks.append(codes)
        if header is None:
            raise InvalidArgument("header", "is required")
        return header, chunks

    def _check_header(self, header) -> None:
        """Every header field, named as the proto names it."""
        with _field_names(IMPORT_HEADER_FIELDS):
            self.s.engine.check_import_terms(
                header.sku_id, header.batch_id, header.supplier_id, header.unit_cost_micros,
                header.valid_from_ms, header.valid_until_ms or None)
        caller = principal()
        if caller.role == "supplier" and header.supplier_id != caller.binding:
            raise InvalidArgument("header.supplier_id",
                                  "a supplier key imports only as its own supplier")

    async def GetStock(self, request, context):
        _text(request.sku_id, "sku_id", name_bytes_max)
        stock = self.s.engine.stock(request.sku_id)
        sku = self.s.catalog.get(request.sku_id) if stock is not None else None
        if stock is None or sku is None:
            return inventory_pb2.GetStockResponse(status=inventory_pb2.STOCK_STATUS_NOT_FOUND)
        response = inventory_pb2.GetStockResponse(
            status=inventory_pb2.STOCK_STATUS_FOUND, sellable=stock.sellable,
            expired_available=stock.expired_available,
            soonest_valid_until_ms=_never_as_zero(stock.soonest_valid_until_ms),
            low_stock=stock.sellable < sku.low_stock_threshold)
        for state, count in stock.counts.items():
            response.counts.add(state=state, count=count)
        for batch in self.s.engine.batch_stock(request.sku_id):
            entry = response.batches.add(batch_id=batch.batch, supplier_id=batch.supplier,
                                         valid_until_ms=_never_as_zero(batch.valid_until_ms))
            for state, count in batch.counts.items():
                entry.counts.add(state=state, count=count)
        return response

    async def _code_op(self, operation, request, name: str):
        refs = []
        for index, ref in enumerate(request.codes):
            kind = ref.WhichOneof("ref")
            if kind is None:
                raise InvalidArgument(f"codes[{index}]", "needs code_id or code")
            refs.append(ref.code_id if kind == "code_id" else ref.code)
        # the reason is never logged: it may quote a code
        log.info("%s by %s: %d codes", name, _actor(), len(refs))
        results = await operation(refs, actor=_actor())
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
        count = await self.s.api.rotate_keys(actor=_actor())
        return inventory_pb2.RotateKeysResponse(rewrapped_batches=count)


IMPORT_HEADER_FIELDS = {"sku": "header.sku_id", "batch": "header.batch_id",
                        "supplier": "header.supplier_id",
                        "unit_cost_micros": "header.unit_cost_micros",
                        "valid_from_ms": "header.valid_from_ms",
                        "valid_until_ms": "header.valid_until_ms"}


class _field_names:
    """Rename the field of an InvalidArgument raised inside to the name the caller sent."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if isinstance(error, InvalidArgument) and error.field in self.names:
            raise InvalidArgument(self.names[error.field], error.message) from None
        return False


def _never_as_zero(valid_until_ms: int) -> int:
    return 0 if valid_until_ms >= 2**62 else valid_until_ms


class OrdersService(orders_pb2_grpc.OrdersServicer):
    def __init__(self, services: Services):
        self.s = services

    def _order_id(self, order_id: str) -> str | None:
        """The order id if this caller may see it (admins see every order)."""
        _text(order_id, "order_id", order_id_bytes_max)
        caller = principal()
        return order_id if caller.role == "admin" or orders.owns(caller.owner, order_id) else None

    def _order(self, order_id: str, reveal: bool) -> orders_pb2.Order | None:
        view = self.s.engine.order(order_id, reveal=reveal)
        meta = orders.read_meta(self.s.engine, order_id)
        if view is None or meta is None:
            return None
        order = orders_pb2.Order(
            order_id=order_id, state=orders.ORDER_STATES[view.state],
            buyer=orders_pb2.Buyer(account_id=meta["account"], ip=meta["ip"],
                                   device_id=meta["device"]),
            total=common_pb2.Money(currency=meta["currency"],
                                   amount_micros=meta["total_micros"]),
            hold_until_ms=view.hold_until_ms, created_ms=view.created_ms,
            payment_reference=meta["payment_reference"], channel=meta["channel"])
        for sku_id, quantity in meta["lines"]:
            order.lines.add(sku_id=sku_id, quantity=quantity)
        for index, code in enumerate(view.codes):
            order.codes.append(_delivered(code, view.plaintexts[index] if reveal else ""))
        return order

    async def CreateOrder(self, request, context):
        caller = principal()
        checked = orders.validate_create(request, self.s.config.hold_seconds_default)
        order_id = orders.order_id_for(caller.owner, request.idempotency_key)
        status, _ = await self.s.engine.submit_async(
            orders.create_order, (self.s.engine._ops, order_id.encode(), caller.owner,
                                  caller.channel, checked), _actor())
        self.s.outcome("CreateOrder", orders_pb2.CreateOrderStatus.Name(status))
        response = orders_pb2.CreateOrderResponse(status=status)
        if status == orders.CREATED:
            response.order.CopyFrom(self._order(order_id, reveal=False))
        return response

    async def ConfirmPayment(self, request, context):
        orders.validate_reference(request.payment_reference)
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.ConfirmPaymentResponse(status=orders.ORDER_NOT_FOUND)
        status, late = await self.s.engine.submit_async(
            orders.confirm_payment,
            (self.s.engine._ops, self.s.engine.impl.codec, order_id.encode(),
             request.payment_reference, request.amount.currency, request.amount.amount_micros),
            _actor())
        self.s.outcome("ConfirmPayment", orders_pb2.ConfirmPaymentStatus.Name(status))
        response = orders_pb2.ConfirmPaymentResponse(status=status, late=late)
        if status == orders.PAID:
            response.order.CopyFrom(self._order(order_id, reveal=True))
        return response

    async def CancelOrder(self, request, context):
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.CancelOrderResponse(status=orders.CANCEL_NOT_FOUND)
        status = await self.s.engine.submit_async(
            orders.cancel, (self.s.engine._ops, self.s.engine.impl.codec, order_id.encode()),
            _actor())
        return orders_pb2.CancelOrderResponse(status=status)

    async def GetOrder(self, request, context):
        order_id = self._order_id(request.order_id)
        order = self._order(order_id, reveal=False) if order_id else None
        if order is None:
            return orders_pb2.GetOrderResponse(status=orders_pb2.ORDER_LOOKUP_STATUS_NOT_FOUND)
        return orders_pb2.GetOrderResponse(status=orders_pb2.ORDER_LOOKUP_STATUS_FOUND,
                                           order=order)

    async def GetDelivery(self, request, context):
        order_id = self._order_id(request.order_id)
        masked = self._order(order_id, reveal=False) if order_id else None
        if masked is None:
            return orders_pb2.GetDeliveryResponse(
                status=orders_pb2.ORDER_LOOKUP_STATUS_NOT_FOUND)
        if masked.state != orders_pb2.ORDER_STATE_PAID:
            return orders_pb2.GetDeliveryResponse(status=orders_pb2.ORDER_LOOKUP_STATUS_NOT_PAID)
        sku_numbers = {}
        with self.s.engine.read() as txn:
            for code in masked.codes:
                sku_numbers[code.sku_id] = self.s.engine._sku_no(txn, code.sku_id.encode())
        # audited before anything is shown
        await self.s.engine.submit_async(
            orders.record_reveal,
            (self.s.engine._ops, order_id.encode(),
             [(code.code_id, code.state, sku_numbers[code.sku_id]) for code in masked.codes]),
            _actor())
        return orders_pb2.GetDeliveryResponse(status=orders_pb2.ORDER_LOOKUP_STATUS_FOUND,
                                              order=self._order(order_id, reveal=True))

    async def ReportInvalidCode(self, request, context):
        _integer(request.code_id, "code_id", 1, 2**63)
        order_id = self._order_id(request.order_id)
        if order_id is None:
            return orders_pb2.ReportInvalidCodeResponse(
                status=orders_pb2.REPORT_INVALID_STATUS_ORDER_NOT_FOUND)
        [result] = await self.s.api.report_invalid([(order_id, request.code_id)],
                                                   actor=_actor())
        response = orders_pb2.ReportInvalidCodeResponse(status=result.status)
        if result.replacement_code_id:
            order = self._order(order_id, reveal=True)
            for code in order.codes:
                if code.code_id == result.replacement_code_id:
                    response.replacement.CopyFrom(code)
        self.s.outcome("ReportInvalidCode", orders_pb2.ReportInvalidStatus.Name(result.status))
        return response


def _delivered(code, plaintext: str) -> orders_pb2.DeliveredCode:
    return orders_pb2.DeliveredCode(code_id=code.code_id, sku_id=code.sku, code=plaintext,
                                    masked_code=code.masked, state=code.state,
                                    valid_until_ms=_never_as_zero(code.valid_until_ms))


class RedemptionService(redemption_pb2_grpc.RedemptionServicer):
    def __init__(self, services: Services):
        self.s = services
        self._status_names = {value: redemption_pb2.RedeemStatus.Name(value)
                              for value in redemption_pb2.RedeemStatus.values()}

    def _count(self, results) -> None:
        """One metric update per status in the call, not one per code."""
        for status, count in collections.Counter(result.status for result in results).items():
            self.s.metrics.redemption(self._status_names[status], count)

    @staticmethod
    def _response(result, request_id: str) -> redemption_pb2.RedeemResponse:
        return redemption_pb2.RedeemResponse(
            status=result.status, code_id=result.code_id, redeemed_at_ms=result.redeemed_at_ms,
            redeemed_by_terminal=result.redeemed_by, request_id=request_id)

    async def Redeem(self, request, context):
        _text(request.request_id, "request_id", request_id_bytes_max)
        results = await self.s.api.redeem([(request.code, request.request_id)],
                                          principal().binding)
        self._count(results)
        return self._response(results[0], request.request_id)

    async def RedeemBatch(self, request, context):
        if len(request.items) > codes_per_batch_max:
            raise InvalidArgument("items", f"has more than {codes_per_batch_max} items")
        if not request.items:
            raise InvalidArgument("items", "must not be empty")
        results = await self.s.api.redeem(
            [(item.code, item.request_id) for item in request.items], principal().binding)
        self._count(results)
        return redemption_pb2.RedeemBatchResponse(results=[
            self._response(result, item.request_id)
            for result, item in zip(results, request.items)])

    async def RedeemStream(self, request_iterator, context):
        """Requests are handed to the engine as they arrive (so they share group commits with
        everyone else's) and answered in order."""
        terminal = principal().binding
        pending: asyncio.Queue = asyncio.Queue(maxsize=stream_redemptions_in_flight_max)

        async def read_ahead():
            try:
                async for request in request_iterator:
                    _text(request.request_id, "request_id", request_id_bytes_max)
                    future = asyncio.ensure_future(
                        self.s.api.redeem([(request.code, request.request_id)], terminal))
                    await pending.put((request.request_id, future))
            finally:
                await pending.put(None)

        reader = asyncio.ensure_future(read_ahead())
        try:
            while (item := await pending.get()) is not None:
                request_id, future = item
                results = await future
                self._count(results)
                yield self._response(results[0], request_id)
            await reader  # surfaces a read error
        finally:
            reader.cancel()

    async def VerifyCode(self, request, context):
        [result] = self.s.engine.verify([request.code])
        response = redemption_pb2.VerifyCodeResponse(status=result.status)
        if result.code is not None:
            code = result.code
            response.MergeFrom(redemption_pb2.VerifyCodeResponse(
                state=code.state, sku_id=code.sku, valid_from_ms=code.valid_from_ms,
                valid_until_ms=_never_as_zero(code.valid_until_ms),
                redeemed_at_ms=code.redeemed_at_ms, redeemed_by_terminal=code.redeemed_by,
                masked_code=code.masked, code_id=code.code_id))
        return response


# -- a worker ---------------------------------------------------------------------------------

def _credentials(config: Config):
    if not config.tls_cert:
        return None
    key = Path(config.tls_key).read_bytes() if config.tls_key else None
    chain = Path(config.tls_cert).read_bytes()
    client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


async def run_worker(config: Config, ready: multiprocessing.synchronize.Event | None) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    worker_metrics = metrics.WorkerMetrics()
    engine = Engine(config.data_dir, map_size_bytes=config.map_size_bytes,
                    master_key_file=config.master_key_file or None)
    engine.on_commit = worker_metrics.on_commit
    services = Services(engine, config, worker_metrics)
    server = grpc.aio.server(
        interceptors=[Gate(engine, config, worker_metrics)],
        options=[("grpc.so_reuseport", 1),
                 ("grpc.max_receive_message_length", config.message_bytes_max),
                 ("grpc.max_send_message_length", config.message_bytes_max)])
    catalog_pb2_grpc.add_CatalogServicer_to_server(CatalogService(services), server)
    inventory_pb2_grpc.add_InventoryServicer_to_server(InventoryService(services), server)
    orders_pb2_grpc.add_OrdersServicer_to_server(OrdersService(services), server)
    redemption_pb2_grpc.add_RedemptionServicer_to_server(RedemptionService(services), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    credentials = _credentials(config)
    if credentials is None:
        server.add_insecure_port(config.listen)
    else:
        server.add_secure_port(config.listen, credentials)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    if ready is not None:
        ready.set()
    await stopping.wait()
    await health_servicer.enter_graceful_shutdown()  # every service NOT_SERVING
    await server.stop(config.grace_seconds)  # refuse new calls, let in-flight ones finish
    engine.close()  # the pending group commit lands first


def worker_main(config: Config, ready) -> None:
    """Entry of a worker process (spawned: nothing of the parent's LMDB state comes along)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(process)d %(message)s")
    asyncio.run(run_worker(config, ready))


# -- the supervisor -----------------------------------------------------------------------------

class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[multiprocessing.Process] = []
        self.stopping = threading.Event()

    def start_worker(self) -> multiprocessing.Process:
        ready = self.context.Event()
        process = self.context.Process(target=worker_main, args=(self.config, ready),
                                       name="kamicore-worker", daemon=False)
        process.start()
        process.ready = ready
        return process

    def run(self) -> int:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s kamicore %(message)s")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        metrics.prepare_directory(self.data_dir)
        engine = Engine(self.data_dir, map_size_bytes=self.config.map_size_bytes,
                        master_key_file=self.config.master_key_file or None)
        admin_key_path = auth.ensure_admin_key(engine, self.data_dir)
        if admin_key_path:
            log.info("first start: an admin key was written to %s (mode 0600)", admin_key_path)
        supervisor_metrics = metrics.SupervisorMetrics()
        if self.config.metrics_listen:
            metrics.start_http(self.config.metrics_listen, engine)
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signal_number, lambda *_: self.stopping.set())
        self.workers = [self.start_worker() for _ in range(self.config.worker_count())]
        for worker in self.workers:
            while not worker.ready.wait(0.1):
                if not worker.is_alive() or self.stopping.is_set():
                    break
        log.info("serving kamicore.v1 on %s with %d workers; metrics on %s",
                 self.config.listen, len(self.workers), self.config.metrics_listen or "(off)")
        print(f"kamicore serving on {self.config.listen}", flush=True)
        try:
            while not self.stopping.wait(self.config.sweep_interval_seconds):
                expired = orders_sweep(engine)
                if expired:
                    supervisor_metrics.expired_holds.inc(expired)
                self._replace_dead_workers()
        finally:
            self._stop_workers()
            engine.close()
        log.info("stopped")
        return 0

    def _replace_dead_workers(self) -> None:
        for index, worker in enumerate(self.workers):
            if not worker.is_alive() and not self.stopping.is_set():
                metrics.worker_exited(worker.pid)
                log.warning("worker %d exited with %s; starting another", worker.pid,
                            worker.exitcode)
                time.sleep(worker_restart_delay_seconds)
                self.workers[index] = self.start_worker()

    def _stop_workers(self) -> None:
        for worker in self.workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_seconds + 5
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("worker %d did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()


def orders_sweep(engine: Engine) -> int:
    """Return every expired hold to stock (in batches); how many orders expired."""
    total = 0
    while True:
        due = engine._run(orders.sweep, (engine._ops, sweep_batch_orders), "sweeper")
        total += len(due)
        if len(due) < sweep_batch_orders:
            return total


def serve(config: Config) -> int:
    return Supervisor(config).run()


