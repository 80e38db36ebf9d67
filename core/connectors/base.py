"""What kamicore knows of a supplier call, whatever the wire: the adapter interface.

A connector makes one call to one supplier endpoint and says what came of it. The one rule that
keeps a buyer from being topped up twice: an answer kamicore cannot trust (a timeout, a
transport error, a 5xx, an answer it cannot parse or whose signature does not verify) is
Result.UNKNOWN, never FAILED. Only the supplier's own signed FAILED or NOT_FOUND says that
nothing happened, and only then may an attempt move to another supplier.

Connectors never raise for anything the supplier or the network does; they raise only for
programmer errors (a bad Endpoint).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from kamicore import limits

PROTOCOLS = ("grpc", "http")


class Result(enum.Enum):
    """The outcome of one supplier call. `.value` is its name, as statistics record it."""

    SUCCEEDED = "SUCCEEDED"  # done (topped up, or the codes are in the answer)
    FAILED = "FAILED"  # the supplier's signed word that it is not done and never will be
    PENDING = "PENDING"  # accepted; the result comes by callback or a later query
    NOT_FOUND = "NOT_FOUND"  # query: the supplier never received this request id
    # timeout, transport error, 5xx, unparseable answer, bad or missing answer signature:
    # the call may or may not have happened. NEVER a failure: ask again (query) instead
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Outcome:
    """The answer to a TopUp or QueryTopUp."""

    result: Result
    supplier_reference: str = ""  # the supplier's own reference, for reconciliation
    message: str = ""  # why (the supplier's message, or what went wrong on the way)
    latency_ms: int = 0  # from sending the call to having its answer (or giving up)


@dataclass(frozen=True)
class Purchase:
    """The answer to a PurchaseCodes. `codes` are plaintexts: seal them, never log them."""

    result: Result
    codes: tuple[str, ...] = ()
    batch_id: str = ""
    unit_cost_micros: int = 0
    currency: str = ""
    valid_until_ms: int = 0  # 0: no end
    message: str = ""
    latency_ms: int = 0

    def __repr__(self) -> str:  # a Purchase in a log line or traceback shows no code
        return (f"Purchase(result={self.result}, codes=<{len(self.codes)} codes>, "
                f"batch_id={self.batch_id!r}, unit_cost_micros={self.unit_cost_micros}, "
                f"currency={self.currency!r}, valid_until_ms={self.valid_until_ms}, "
                f"message={self.message!r}, latency_ms={self.latency_ms})")


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call one supplier.

    address: gRPC "host:port" (or "grpcs://host:port" for TLS with the system's roots); HTTP
    a base URL ("http://host:port" or "https://host/prefix"; "host:port" means http://).
    """

    supplier_id: str
    protocol: str  # "grpc" | "http"
    address: str
    timeout_ms: int  # the deadline of each call
    secret: bytes  # the HMAC key shared with the supplier; never logged or shown

    def __post_init__(self):
        assert self.protocol in PROTOCOLS, f"protocol {self.protocol!r} is not one of {PROTOCOLS}"
        assert 0 < self.timeout_ms <= limits.supplier_timeout_ms_max, self.timeout_ms
        assert self.address and self.secret

    def __repr__(self) -> str:  # the secret never reaches a log line or a traceback
        return (f"Endpoint(supplier_id={self.supplier_id!r}, protocol={self.protocol!r}, "
                f"address={self.address!r}, timeout_ms={self.timeout_ms})")


class Connector(Protocol):
    """One supplier endpoint. Safe to share between tasks of one event loop."""

    endpoint: Endpoint

    async def top_up(self, request_id: str, product: str, recipient: str, amount_micros: int,
                     currency: str, callback_url: str) -> Outcome: ...

    async def query(self, request_id: str) -> Outcome: ...

    async def purchase_codes(self, request_id: str, product: str, quantity: int) -> Purchase: ...

    async def close(self) -> None: ...
