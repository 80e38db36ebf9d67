"""Suppliers: who tops up buyers' accounts and sells codes to kamicore, and their routes.

A supplier is one record of the `suppliers` table: its endpoint, protocol, timeout, whether it
is enabled, its routes (per SKU: the supplier's product code, its cost in the SKU's currency, a
priority, enabled) and its signing secret, sealed by the engine (kamicore.engine.keys: AES-GCM
under a key wrapped by the master key, readable after a key rotation) and opened only in
memory. The secret is write-only over the API: no reply, log, metric or error carries it.
`supplier_routes` indexes the routes by SKU (sku id + NUL + supplier id -> nothing), written
in the same commit as the record, so an order finds its SKU's routes without a scan.

Domain code: no *_pb2, no connectors. `view` below is a plan's Transaction or the Engine (a
snapshot read); both offer get/scan/open_secret. Routing, the circuit breaker and the
statistics are kamicore.domain.routing's.
"""

from __future__ import annotations

import dataclasses

from .. import limits
from ..engine import Engine, InvalidArgument
from ..engine.validate import integer, text
from ..keyring import constant_time_equal
from ..statuses import RegisterSupplierStatus, UpdateSupplierStatus
from . import catalog, sealed_records

TABLE = "suppliers"
ROUTES_TABLE = "supplier_routes"
PROTOCOLS = ("grpc", "http")
SEPARATOR = b"\0"  # ids never hold control characters (engine.validate.text)


@dataclasses.dataclass(frozen=True)
class Route:
    """One way a SKU is fulfilled: through `supplier_id`, as its `product`, at `cost_micros`
    (per unit, in `currency`, the SKU's)."""

    sku_id: str
    supplier_id: str
    product: str
    cost_micros: int
    currency: str
    priority: int = 0  # lower first under PRIORITY, and every strategy's tie-break
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Supplier:
    supplier_id: str
    name: str
    protocol: str  # "grpc" | "http"
    address: str  # grpc: host:port; http: base URL
    timeout_ms: int
    enabled: bool
    secret: bytes = dataclasses.field(default=b"", repr=False)  # unsealed in memory only
    routes: tuple[Route, ...] = ()
    created_ms: int = 0
    updated_ms: int = 0

    def definition(self) -> Supplier:
        """What a retry of RegisterSupplier must repeat (the secret is compared apart, in
        constant time): everything but the timestamps."""
        return dataclasses.replace(self, secret=b"", created_ms=0, updated_ms=0)

    def route(self, sku_id: str) -> Route | None:
        return next((route for route in self.routes if route.sku_id == sku_id), None)


def _purpose(supplier_id: str) -> bytes:
    return b"supplier:" + supplier_id.encode()


def _build(fields: dict, secret: bytes) -> Supplier:
    fields["routes"] = tuple(Route(**route) for route in fields["routes"])
    return Supplier(secret=secret, **fields)


# a stored supplier with its secret opened; one decoded copy per stored value
_decode = sealed_records.Decoder(_build, lambda fields: _purpose(fields["supplier_id"]),
                                 limits.skus_decoded_cached_max)
_encode = sealed_records.encode
_sealed = sealed_records.sealed_of


# -- validation ---------------------------------------------------------------------------------

def _address(protocol: str, address: str, field: str) -> None:
    text(address, field, limits.supplier_address_bytes_max)
    if protocol == "http":
        if not address.startswith(("http://", "https://")) or len(address.split("://")[1]) == 0:
            raise InvalidArgument(field, "must be an http:// or https:// URL")
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(field, "must be host:port")


def validate(supplier: Supplier, field: str = "supplier", secret_required: bool = True
             ) -> Supplier:
    """A clean copy of `supplier` (timestamps cleared), or InvalidArgument naming the field.
    An empty secret is allowed only when not `secret_required` (an update keeping it)."""
    text(supplier.supplier_id, f"{field}.supplier_id", limits.name_bytes_max)
    text(supplier.name, f"{field}.name", limits.display_name_bytes_max, required=False)
    if supplier.protocol not in PROTOCOLS:
        raise InvalidArgument(f"{field}.protocol", "must be GRPC or HTTP_JSON")
    _address(supplier.protocol, supplier.address, f"{field}.address")
    integer(supplier.timeout_ms, f"{field}.timeout_ms", 1, limits.supplier_timeout_ms_max)
    sealed_records.check_secret(supplier.secret, f"{field}.signing_secret", secret_required,
                                limits.supplier_secret_bytes_min, limits.supplier_secret_bytes_max)
    if len(supplier.routes) > limits.routes_per_supplier_max:
        raise InvalidArgument(f"{field}.routes",
                              f"has more than {limits.routes_per_supplier_max} items")
    routes, seen = [], set()
    for index, route in enumerate(supplier.routes):
        where = f"{field}.routes[{index}]"
        text(route.sku_id, f"{where}.sku_id", limits.name_bytes_max)
        if route.sku_id in seen:
            raise InvalidArgument(f"{where}.sku_id", "is listed twice")
        seen.add(route.sku_id)
        text(route.product, f"{where}.product", limits.name_bytes_max)
        currency = route.currency
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise InvalidArgument(f"{where}.cost.currency", "must be an ISO 4217 code")
        integer(route.cost_micros, f"{where}.cost.amount_micros", 0, limits.unit_cost_micros_max)
        integer(route.priority, f"{where}.priority", 0, 2**32 - 1)
        routes.append(dataclasses.replace(route, supplier_id=supplier.supplier_id,
                                          enabled=bool(route.enabled)))
    return dataclasses.replace(supplier, enabled=bool(supplier.enabled), routes=tuple(routes),
                               created_ms=0, updated_ms=0)


# -- reads --------------------------------------------------------------------------------------

def read(view, supplier_id: str) -> Supplier | None:
    """A supplier (secret opened) as `view` sees it."""
    value = view.get(TABLE, supplier_id.encode())
    return _decode(view, value) if value is not None else None


def scan_prefix(view, table: str, prefix: bytes, limit: int):
    """The first `limit` records of `table` whose key starts with `prefix`, in key order; read
    in growing chunks, so a SKU with two routes reads a handful of keys, not `limit`."""
    start, chunk, found = prefix, 8, 0
    while found < limit:
        asked = min(chunk, limit - found)
        records = view.scan(table, start, asked)
        for key, value in records:
            if not bytes(key).startswith(prefix):
                return
            found += 1
            yield bytes(key), value
        if len(records) < asked:
            return
        start, chunk = bytes(records[-1][0]) + b"\0", min(chunk * 4, 1_000)


def route_keys(view, sku_id: str) -> list[str]:
    """The ids of the suppliers with a route for `sku_id` (enabled or not), in id order."""
    prefix = sku_id.encode() + SEPARATOR
    return [key[len(prefix):].decode()
            for key, _ in scan_prefix(view, ROUTES_TABLE, prefix, limits.routes_per_sku_max)]


def routes(view, sku_id: str) -> list[Route]:
    """The enabled routes of enabled suppliers for `sku_id`, in supplier id order."""
    found = []
    for supplier_id in route_keys(view, sku_id):
        supplier = read(view, supplier_id)
        if supplier is None or not supplier.enabled:
            continue
        route = supplier.route(sku_id)
        if route is not None and route.enabled:
            found.append(route)
    return found


def page(engine: Engine, page_size: int, page_token: str) -> tuple[list[Supplier], str]:
    """A page of suppliers in id order (secrets left empty), and the next page's token."""
    page_size = page_size or limits.suppliers_per_page_default
    integer(page_size, "page_size", 1, limits.suppliers_per_page_max)
    text(page_token, "page_token", limits.name_bytes_max, required=False)
    start = page_token.encode() + b"\0" if page_token else b""
    found = engine.scan(TABLE, start, page_size + 1)
    suppliers = [dataclasses.replace(_decode(engine, value), secret=b"")
                 for _, value in found[:page_size]]
    return suppliers, (suppliers[-1].supplier_id if len(found) > page_size else "")


# -- writes (plan functions) ---------------------------------------------------------------------

def _refused_route(transaction, supplier: Supplier, not_found, mismatch):
    """The first route whose SKU is missing or priced in another currency -> (status, sku)."""
    for route in supplier.routes:
        sku = catalog.read(transaction, route.sku_id)
        if sku is None:
            return not_found, route.sku_id
        if sku.currency != route.currency:
            return mismatch, route.sku_id
    return None


def _store(transaction, supplier: Supplier, sealed: bytes, before: Supplier | None) -> None:
    transaction.put(TABLE, supplier.supplier_id.encode(), _encode(supplier, sealed))
    kept = {route.sku_id for route in supplier.routes}
    for route in before.routes if before is not None else ():
        if route.sku_id not in kept:
            transaction.delete(ROUTES_TABLE, _route_key(route.sku_id, supplier.supplier_id))
    for route in supplier.routes:
        transaction.put(ROUTES_TABLE, _route_key(route.sku_id, supplier.supplier_id), b"")


def _route_key(sku_id: str, supplier_id: str) -> bytes:
    return sku_id.encode() + SEPARATOR + supplier_id.encode()


def _register(transaction, supplier: Supplier):
    """-> (status, stored supplier or None, sku id of a refused route)"""
    existing = read(transaction, supplier.supplier_id)
    if existing is not None:
        same = existing.definition() == supplier.definition() \
            and constant_time_equal(existing.secret, supplier.secret)
        return (RegisterSupplierStatus.REGISTERED if same
                else RegisterSupplierStatus.ALREADY_EXISTS), existing, ""
    refused = _refused_route(transaction, supplier, RegisterSupplierStatus.SKU_NOT_FOUND,
                             RegisterSupplierStatus.CURRENCY_MISMATCH)
    if refused is not None:
        return refused[0], None, refused[1]
    supplier = dataclasses.replace(supplier, created_ms=transaction.now_ms,
                                   updated_ms=transaction.now_ms)
    _store(transaction, supplier,
           transaction.seal_secret(_purpose(supplier.supplier_id), supplier.secret), None)
    return RegisterSupplierStatus.REGISTERED, supplier, ""


def _update(transaction, supplier: Supplier):
    value = transaction.get(TABLE, supplier.supplier_id.encode())
    if value is None:
        return UpdateSupplierStatus.NOT_FOUND, None, ""
    existing = _decode(transaction, value)
    refused = _refused_route(transaction, supplier, UpdateSupplierStatus.SKU_NOT_FOUND,
                             UpdateSupplierStatus.CURRENCY_MISMATCH)
    if refused is not None:
        return refused[0], None, refused[1]
    if supplier.secret:
        sealed = transaction.seal_secret(_purpose(supplier.supplier_id), supplier.secret)
    else:
        sealed, supplier = _sealed(value), dataclasses.replace(supplier, secret=existing.secret)
    supplier = dataclasses.replace(supplier, created_ms=existing.created_ms,
                                   updated_ms=transaction.now_ms)
    _store(transaction, supplier, sealed, existing)
    return UpdateSupplierStatus.UPDATED, supplier, ""


def _without_secret(raw):
    status, supplier, sku_id = raw
    return status, (dataclasses.replace(supplier, secret=b"") if supplier else None), sku_id


class Suppliers:
    """The writes of the Suppliers service. Answers carry the supplier without its secret."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def _plan_register(self, supplier: Supplier, actor: str):
        return self.engine.plan(_register, (validate(supplier),), actor, convert=_without_secret,
                                full=lambda: (RegisterSupplierStatus.STORAGE_FULL, None, ""))

    def register(self, supplier: Supplier, actor: str = "admin"):
        """-> (RegisterSupplierStatus, supplier without secret or None, refused route's sku)"""
        return self.engine.run(self._plan_register(supplier, actor))

    async def register_async(self, supplier: Supplier, actor: str = "admin"):
        return await self.engine.run_async(self._plan_register(supplier, actor))

    def _plan_update(self, supplier: Supplier, actor: str):
        return self.engine.plan(_update, (validate(supplier, secret_required=False),), actor,
                                convert=_without_secret,
                                full=lambda: (UpdateSupplierStatus.STORAGE_FULL, None, ""))

    def update(self, supplier: Supplier, actor: str = "admin"):
        """-> (UpdateSupplierStatus, supplier without secret or None, refused route's sku)"""
        return self.engine.run(self._plan_update(supplier, actor))

    async def update_async(self, supplier: Supplier, actor: str = "admin"):
        return await self.engine.run_async(self._plan_update(supplier, actor))


__all__ = ["PROTOCOLS", "Route", "Supplier", "Suppliers", "page", "read", "route_keys",
           "routes", "validate"]
