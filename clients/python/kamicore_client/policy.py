"""The client's defaults: a deadline per method, and which calls are retried with what key.

A call is retried only when its request carries the key that makes the server answer a repeat
with the first answer instead of acting again (the proto comments promise it):
CreateOrder's idempotency_key, ConfirmPayment's payment_reference, Redeem's request_id and every
item's request_id in RedeemBatch. Every attempt sends the very same request, key included; the
client generates the idempotency key and request ids the caller leaves empty. It never invents
a payment_reference: that is the payment provider's id of the money received, and a made-up
one would make a later retry by the caller look like a second payment (ALREADY_PAID); without
one the server answers INVALID_ARGUMENT. Other calls, reads included, are never retried: they
carry no key, so the caller decides. Every attempt gets the whole deadline (the method's
default or the call's timeout=), so a keyed call may take up to RETRY_ATTEMPTS_MAX of them.
"""

from __future__ import annotations

import random
import uuid

import grpc
from google.protobuf.message import Message

from kamicore_client._services import METHODS

# -- deadlines (seconds; a call's `timeout=` overrides them) -------------------------------------
READ_DEADLINE_SECONDS = 10.0  # lookups and listings
WRITE_DEADLINE_SECONDS = 15.0  # catalog, supplier, risk and code operations
CREATE_ORDER_DEADLINE_SECONDS = 15.0
# a top-up answers after at most about its first supplier's timeout (60 s at most on the server)
CONFIRM_PAYMENT_DEADLINE_SECONDS = 75.0
# a terminal that keeps missing gets every answer delayed, by up to 2 s
REDEEM_DEADLINE_SECONDS = 10.0
REDEEM_BATCH_DEADLINE_SECONDS = 30.0  # up to 1,000 codes, each possibly a delayed miss
STREAM_DEADLINE_SECONDS = 3600.0  # a whole ImportCodes, RedeemStream or WatchEvents stream
ROTATE_KEYS_DEADLINE_SECONDS = 300.0  # re-wraps every batch key

_WRITES = {"CreateSku", "UpdateSku", "FreezeCodes", "UnfreezeCodes", "VoidCodes", "CancelOrder",
           "ReportInvalidCode", "UnlockTerminal", "SetRiskRules", "DecideReview",
           "RegisterSupplier", "UpdateSupplier", "SupplierCallback"}
_SPECIAL = {"CreateOrder": CREATE_ORDER_DEADLINE_SECONDS,
            "ConfirmPayment": CONFIRM_PAYMENT_DEADLINE_SECONDS,
            "Redeem": REDEEM_DEADLINE_SECONDS, "RedeemBatch": REDEEM_BATCH_DEADLINE_SECONDS,
            "ImportCodes": STREAM_DEADLINE_SECONDS, "RedeemStream": STREAM_DEADLINE_SECONDS,
            "WatchEvents": STREAM_DEADLINE_SECONDS,  # Client.watch_events renews it
            "RotateKeys": ROTATE_KEYS_DEADLINE_SECONDS}


def _deadline(method: str) -> float:
    name = method.rsplit("/", 1)[1]
    if name in _SPECIAL:
        return _SPECIAL[name]
    return WRITE_DEADLINE_SECONDS if name in _WRITES else READ_DEADLINE_SECONDS


DEADLINES_SECONDS: dict[str, float] = {method: _deadline(method) for method in METHODS}

# -- retries -------------------------------------------------------------------------------------
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RETRY_ATTEMPTS_MAX = 4  # the first call and at most 3 retries
RETRY_BACKOFF_FIRST_SECONDS = 0.1  # the longest wait before the first retry (full jitter)
RETRY_BACKOFF_MAX_SECONDS = 2.0  # ... and before any retry

# method -> (the request field that makes a retry safe, whether the client fills it when empty)
RETRY_KEYS: dict[str, tuple[str, bool]] = {
    "/kamicore.v1.Orders/CreateOrder": ("idempotency_key", True),
    "/kamicore.v1.Orders/ConfirmPayment": ("payment_reference", False),
    "/kamicore.v1.Redemption/Redeem": ("request_id", True),
}
# method -> (the repeated field, its items' key field): retried when every item has its key
ITEM_KEYS: dict[str, tuple[str, str]] = {
    "/kamicore.v1.Redemption/RedeemBatch": ("items", "request_id"),
    "/kamicore.v1.Redemption/RedeemStream": ("", "request_id"),  # each streamed request
}


def new_key() -> str:
    """A fresh idempotency key or request id: 32 hex characters (the server takes 1-64 bytes)."""
    return uuid.uuid4().hex


def with_key(method: str, request: Message) -> tuple[Message, bool]:
    """(the request to send on every attempt, whether it may be retried). A request whose key
    is empty is copied with a new key; the caller's message is left as it was."""
    if method in RETRY_KEYS:
        field, generated = RETRY_KEYS[method]
        if getattr(request, field):
            return request, True
        if not generated:
            return request, False
        request = _copy(request)
        setattr(request, field, new_key())
        return request, True
    if method in ITEM_KEYS and ITEM_KEYS[method][0]:
        items, field = ITEM_KEYS[method]
        if not all(getattr(item, field) for item in getattr(request, items)):
            request = _copy(request)
            for item in getattr(request, items):
                if not getattr(item, field):
                    setattr(item, field, new_key())
        return request, len(getattr(request, items)) > 0
    return request, False


def with_item_key(method: str, request: Message) -> Message:
    """A streamed request with its request id (generated when empty), where the method has one."""
    if method in ITEM_KEYS and not ITEM_KEYS[method][0]:
        field = ITEM_KEYS[method][1]
        if not getattr(request, field):
            request = _copy(request)
            setattr(request, field, new_key())
    return request


def retryable(error: grpc.RpcError, attempt: int) -> bool:
    """Whether a keyed call that failed with `error` on its `attempt`-th try (from 1) goes on."""
    return error.code() in RETRYABLE_CODES and attempt < RETRY_ATTEMPTS_MAX


def backoff_seconds(attempt: int) -> float:
    """How long to wait after the `attempt`-th failed try (from 1): full jitter, doubling."""
    ceiling = min(RETRY_BACKOFF_MAX_SECONDS, RETRY_BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
    return random.uniform(0, ceiling)


def _copy(request: Message) -> Message:
    copy = type(request)()
    copy.CopyFrom(request)
    return copy
