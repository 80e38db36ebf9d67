"""Orders as storefronts and partners see them: idempotency keys, buyers, channel prices,
per-account purchase limits, payment references and amounts.

Each operation here runs inside the engine's writer, in the same transaction as the code
transitions it causes (`Engine.submit_async`), so an order's bookkeeping and its codes commit
together or not at all. Bookkeeping lives in two sub-databases: `order_meta` (order id -> JSON)
and `purchases` (owner, account, sku -> units held in open or paid orders).
"""

from __future__ import annotations

import json

from . import catalog as catalog_module
from ._codec import name_bytes_max
from .engine import (
    InvalidArgument, _integer, _text, codes_per_line_max, codes_per_order_max, hold_seconds_max,
    lines_per_order_max,
)
from .auth import ORDER_ID_SEPARATOR
from .statuses import ConfirmStatus, OrderState, ReserveStatus
from .v1 import catalog_pb2, orders_pb2

CREATED = orders_pb2.CREATE_ORDER_STATUS_CREATED
IDEMPOTENCY_CONFLICT = orders_pb2.CREATE_ORDER_STATUS_IDEMPOTENCY_CONFLICT
SKU_NOT_FOUND = orders_pb2.CREATE_ORDER_STATUS_SKU_NOT_FOUND
DELIVERY_NOT_SUPPORTED = orders_pb2.CREATE_ORDER_STATUS_DELIVERY_NOT_SUPPORTED
NOT_SOLD_ON_CHANNEL = orders_pb2.CREATE_ORDER_STATUS_NOT_SOLD_ON_CHANNEL
LIMIT_EXCEEDED = orders_pb2.CREATE_ORDER_STATUS_LIMIT_EXCEEDED
INSUFFICIENT_STOCK = orders_pb2.CREATE_ORDER_STATUS_INSUFFICIENT_STOCK

PAID = orders_pb2.CONFIRM_PAYMENT_STATUS_PAID
ORDER_NOT_FOUND = orders_pb2.CONFIRM_PAYMENT_STATUS_ORDER_NOT_FOUND
ALREADY_PAID = orders_pb2.CONFIRM_PAYMENT_STATUS_ALREADY_PAID
AMOUNT_MISMATCH = orders_pb2.CONFIRM_PAYMENT_STATUS_AMOUNT_MISMATCH
REFUND_REQUIRED = orders_pb2.CONFIRM_PAYMENT_STATUS_REFUND_REQUIRED

CANCELLED = orders_pb2.CANCEL_ORDER_STATUS_CANCELLED
CANCEL_NOT_FOUND = orders_pb2.CANCEL_ORDER_STATUS_ORDER_NOT_FOUND
CANCEL_ALREADY_PAID = orders_pb2.CANCEL_ORDER_STATUS_ALREADY_PAID

ORDER_STATES = {"RESERVED": orders_pb2.ORDER_STATE_RESERVED, "PAID": orders_pb2.ORDER_STATE_PAID,
                "CANCELLED": orders_pb2.ORDER_STATE_CANCELLED,
                "EXPIRED": orders_pb2.ORDER_STATE_EXPIRED}

idempotency_key_bytes_max = 64
account_bytes_max = 64
buyer_field_bytes_max = 128
payment_reference_bytes_max = 128


def order_id_for(owner: str, idempotency_key: str) -> str:
    """Orders live in their creator's namespace: another caller cannot name them. Owners never
    contain the separator (kamicore.auth refuses such bindings), so the first one splits an
    order id unambiguously."""
    assert ORDER_ID_SEPARATOR not in owner
    return f"{owner}{ORDER_ID_SEPARATOR}{idempotency_key}"


def owns(owner: str, order_id: str) -> bool:
    return order_id.partition(ORDER_ID_SEPARATOR)[0] == owner


def validate_create(request: orders_pb2.CreateOrderRequest, hold_seconds_default: int) -> dict:
    _text(request.idempotency_key, "idempotency_key", idempotency_key_bytes_max)
    _text(request.buyer.account_id, "buyer.account_id", account_bytes_max)
    _text(request.buyer.ip, "buyer.ip", buyer_field_bytes_max, required=False)
    _text(request.buyer.device_id, "buyer.device_id", buyer_field_bytes_max, required=False)
    if not request.lines:
        raise InvalidArgument("lines", "must not be empty")
    if len(request.lines) > lines_per_order_max:
        raise InvalidArgument("lines", f"has more than {lines_per_order_max} items")
    lines = []
    for index, line in enumerate(request.lines):
        _text(line.sku_id, f"lines[{index}].sku_id", name_bytes_max)
        _integer(line.quantity, f"lines[{index}].quantity", 1, codes_per_line_max)
        lines.append((line.sku_id, line.quantity))
    if sum(quantity for _, quantity in lines) > codes_per_order_max:
        raise InvalidArgument("lines", f"more than {codes_per_order_max} codes in all")
    hold_seconds = request.hold_seconds or hold_seconds_default
    _integer(hold_seconds, "hold_seconds", 1, hold_seconds_max)
    return {"account": request.buyer.account_id, "ip": request.buyer.ip,
            "device": request.buyer.device_id, "lines": lines, "hold_ms": hold_seconds * 1000}


def _per_sku(lines) -> dict[str, int]:
    totals: dict[str, int] = {}
    for sku, quantity in lines:
        totals[sku] = totals.get(sku, 0) + quantity
    return totals


def _purchase_key(meta: dict, sku: str) -> bytes:
    return f"{meta['owner']}\0{meta['account']}\0{sku}".encode()


def _held_units(tx, meta: dict, sku: str) -> int:
    value = tx.txn.get(_purchase_key(meta, sku), db=tx.dbs.purchases)
    return int(value) if value is not None else 0


def _adjust_purchases(tx, meta: dict, sign: int) -> None:
    for sku, quantity in _per_sku(meta["lines"]).items():
        held = max(0, _held_units(tx, meta, sku) + sign * quantity)
        key = _purchase_key(meta, sku)
        if held:
            tx.txn.put(key, str(held).encode(), db=tx.dbs.purchases)
        else:
            tx.txn.delete(key, db=tx.dbs.purchases)


def _put_meta(tx, order_id: bytes, meta: dict) -> None:
    tx.txn.put(order_id, json.dumps(meta, sort_keys=True).encode(), db=tx.dbs.order_meta)


def _meta(tx, order_id: bytes) -> dict | None:
    value = tx.txn.get(order_id, db=tx.dbs.order_meta)
    return json.loads(value) if value is not None else None


def _engine_order_state(tx, ops, codec, order_id: bytes) -> OrderState:
    return OrderState(codec.unpack_order(tx.txn.get(order_id, db=tx.dbs.orders))[0])


def create_order(tx, ops, order_id: bytes, owner: str, channel: str, request: dict):
    """-> (status, meta or None). Ladder in CreateOrderStatus order."""
    fingerprint = [request["account"], request["ip"], request["device"], request["lines"],
                   request["hold_ms"]]
    existing = _meta(tx, order_id)
    if existing is not None:
        same = existing["fingerprint"] == json.loads(json.dumps(fingerprint))
        return (CREATED, existing) if same else (IDEMPOTENCY_CONFLICT, None)
    skus = {}
    for sku_id, _ in request["lines"]:
        stored = tx.txn.get(sku_id.encode(), db=tx.dbs.catalog)
        if stored is None:
            return SKU_NOT_FOUND, None
        skus[sku_id] = catalog_pb2.Sku.FromString(stored)
    if any(sku.delivery_kind != catalog_pb2.DELIVERY_KIND_CODE for sku in skus.values()):
        return DELIVERY_NOT_SUPPORTED, None
    prices = {sku_id: catalog_module.price_micros(sku, channel) for sku_id, sku in skus.items()}
    if any(price is None for price in prices.values()):
        return NOT_SOLD_ON_CHANNEL, None
    currencies = {sku.face_value.currency for sku in skus.values()}
    if len(currencies) > 1:
        raise InvalidArgument("lines", "SKUs priced in different currencies cannot share an "
                              "order")
    meta = {"owner": owner, "channel": channel, "account": request["account"],
            "ip": request["ip"], "device": request["device"], "lines": request["lines"],
            "hold_ms": request["hold_ms"], "fingerprint": fingerprint,
            "currency": currencies.pop(), "payment_reference": "", "created_ms": tx.now_ms,
            "total_micros": sum(prices[sku] * quantity for sku, quantity in request["lines"])}
    for sku_id, quantity in _per_sku(request["lines"]).items():
        limit = skus[sku_id].purchase_limit_per_account
        if limit and _held_units(tx, meta, sku_id) + quantity > limit:
            return LIMIT_EXCEEDED, None
    [(status, _, _)] = ops.reserve(tx, [(order_id, [(sku.encode(), quantity)
                                                    for sku, quantity in request["lines"]],
                                         request["hold_ms"])])
    if status != ReserveStatus.RESERVED:
        return INSUFFICIENT_STOCK, None
    _adjust_purchases(tx, meta, +1)
    _put_meta(tx, order_id, meta)
    return CREATED, meta


def confirm_payment(tx, ops, codec, order_id: bytes, reference: str, currency: str,
                    amount_micros: int):
    """-> (status, late). Ladder in ConfirmPaymentStatus order."""
    meta = _meta(tx, order_id)
    if meta is None:
        return ORDER_NOT_FOUND, False
    if meta["payment_reference"]:
        return (PAID if meta["payment_reference"] == reference else ALREADY_PAID), False
    if currency != meta["currency"] or amount_micros != meta["total_micros"]:
        return AMOUNT_MISMATCH, False
    [(status, _, late)] = ops.confirm(tx, [order_id])
    if status != ConfirmStatus.SOLD:
        return REFUND_REQUIRED, False
    if late:  # its release had given the units back; paid for, so counted even past a limit
        _adjust_purchases(tx, meta, +1)
    meta["payment_reference"] = reference
    meta["paid_ms"] = tx.now_ms
    _put_meta(tx, order_id, meta)
    return PAID, late


def cancel(tx, ops, codec, order_id: bytes):
    meta = _meta(tx, order_id)
    if meta is None:
        return CANCEL_NOT_FOUND
    state = _engine_order_state(tx, ops, codec, order_id)
    if state == OrderState.PAID:
        return CANCEL_ALREADY_PAID
    if state == OrderState.RESERVED:
        ops.release(tx, [order_id])
        _adjust_purchases(tx, meta, -1)
    return CANCELLED


def sweep(tx, ops, limit: int) -> list[bytes]:
    """Give expired holds back to stock, and their units back to their buyers' limits."""
    due = ops.expire_holds(tx, limit)
    for order_id in due:
        meta = _meta(tx, order_id)
        if meta is not None:
            _adjust_purchases(tx, meta, -1)
    return due


def record_reveal(tx, ops, order_id: bytes, codes: list) -> None:
    """One audit event per code shown again to its buyer (codes: [(code_id, state, sku_no)])."""
    ops.append_audit(tx.txn, tx.dbs, tx.now_ms, _reveal_op(ops), tx.actor,
                     [(code_id, state, state, sku_no) for code_id, state, sku_no in codes])


def _reveal_op(ops) -> int:
    return next(number for number, name in ops.OP_NAMES.items() if name == "reveal")


def read_meta(engine, order_id: str) -> dict | None:
    with engine.read() as txn:
        value = txn.get(order_id.encode(), db=engine.dbs.order_meta)
    return json.loads(value) if value is not None else None


def validate_reference(reference: str) -> None:
    _text(reference, "payment_reference", payment_reference_bytes_max)
