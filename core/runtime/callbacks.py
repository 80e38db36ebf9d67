"""Supplier callbacks: the ONE handler behind both ways they arrive, the HTTP listener (served
by the dispatcher, `POST /v1/callbacks/<supplier id>`) and the gRPC
kamicore.v1.Suppliers/SupplierCallback (served by the workers), so both are verified and decided
the same way.

In order: the supplier must be registered; the signature (HMAC-SHA256 with its secret over the
timestamp and the body) must be its own and the timestamp within the clock skew; the document
must parse; then the answer is settled in one commit (kamicore.domain.topups.settle). A bad
signature, a stale timestamp, a replayed callback (a signature already received for the
attempt), an unknown request id (or another supplier's), a second different answer for a
settled attempt change nothing. Every callback is counted by its outcome in
kamicore_supplier_callbacks_total{outcome}; nothing of its body is logged.
"""

from __future__ import annotations

from .. import limits, metrics
from ..connectors import signing
from ..domain import suppliers, topups

UNKNOWN_SUPPLIER = "unknown_supplier"
BAD_SIGNATURE = signing.BAD_SIGNATURE
STALE_TIMESTAMP = signing.STALE_TIMESTAMP
MALFORMED = "malformed"
STORAGE_FULL = "storage_full"
# outcome -> the HTTP status the listener answers with (a 2xx tells the supplier to stop
# sending it; a 4xx that sending it again will not help)
HTTP_STATUS = {topups.APPLIED: 200, topups.LATE: 200, topups.DUPLICATE: 200,
               topups.REPLAYED: 409, topups.CONFLICT: 409, topups.UNKNOWN_REQUEST: 404,
               UNKNOWN_SUPPLIER: 404, BAD_SIGNATURE: 401, STALE_TIMESTAMP: 401, MALFORMED: 400,
               STORAGE_FULL: 503}


class CallbackHandler:
    """Verifies and settles callbacks; `driver` (kamicore.runtime.topups.Driver) commits the
    answer and starts the next attempt of a failover."""

    def __init__(self, engine, driver):
        self.engine = engine
        self.driver = driver

    async def handle(self, supplier_id: str, timestamp_ms: int, body: bytes,
                     signature: str) -> tuple[str, str]:
        """-> (outcome, what was wrong with the document when MALFORMED, else "")."""
        outcome, detail = await self._decide(supplier_id, timestamp_ms, body, signature)
        metrics.topup_metrics().callback(outcome)
        return outcome, detail

    async def _decide(self, supplier_id: str, timestamp_ms: int, body: bytes,
                      signature: str) -> tuple[str, str]:
        supplier = None
        if supplier_id and len(supplier_id.encode()) <= limits.name_bytes_max:
            supplier = suppliers.read(self.engine, supplier_id)
        if supplier is None:
            return UNKNOWN_SUPPLIER, ""
        refused = signing.verify(supplier.secret, timestamp_ms, body, signature,
                                 signing.now_ms())
        if refused is not None:
            return refused, ""
        try:
            callback = signing.parse_callback(body)
        except ValueError as error:
            return MALFORMED, str(error)
        outcome = await self.driver.settle(
            callback.request_id, callback.result.value, callback.supplier_reference,
            callback.message, -1, supplier_id, signature.strip().lower())
        return (outcome or STORAGE_FULL), ""

    async def http(self, supplier_id: str, timestamp_ms: int, body: bytes,
                   signature: str) -> tuple[int, str]:
        """The listener's handler (kamicore.connectors.http_callbacks) -> (status, reason)."""
        outcome, detail = await self.handle(supplier_id, timestamp_ms, body, signature)
        return HTTP_STATUS[outcome], f"{outcome}: {detail}" if detail else outcome
