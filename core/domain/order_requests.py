"""An order request as the domain sees it, checked before anything is queued, and the order
ids that keep each caller's orders in its own namespace."""

from __future__ import annotations

import dataclasses

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import integer, text

ORDER_ID_SEPARATOR = "/"


@dataclasses.dataclass(frozen=True)
class OrderRequest:
    """A CreateOrder as the domain sees it."""

    idempotency_key: str
    account: str
    ip: str
    device: str
    lines: list[tuple[str, int]]  # (sku id, quantity)
    hold_seconds: int  # 0: the server's default
    phone_bound: bool = False
    account_created_ms: int = 0  # when the storefront first saw the account; 0: unknown
    verifications: tuple[str, ...] = ()  # verifications the buyer passed (risk challenges)
    recipient: str = ""  # the account a DIRECT_TOPUP order tops up (required for those only)


def order_id_for(owner: str, idempotency_key: str) -> str:
    """Orders live in their creator's namespace: another caller cannot name them. Owners never
    contain the separator (kamicore.auth refuses such bindings), so the first one splits an
    order id unambiguously."""
    assert ORDER_ID_SEPARATOR not in owner
    return f"{owner}{ORDER_ID_SEPARATOR}{idempotency_key}"


def owns(owner: str, order_id: str) -> bool:
    return order_id.partition(ORDER_ID_SEPARATOR)[0] == owner


def validate_create(request: OrderRequest, hold_seconds_default: int) -> dict:
    """The request checked, as the plan's arguments; InvalidArgument names the bad field."""
    text(request.idempotency_key, "idempotency_key", limits.idempotency_key_bytes_max)
    text(request.account, "buyer.account_id", limits.account_bytes_max)
    text(request.ip, "buyer.ip", limits.buyer_field_bytes_max, required=False)
    text(request.device, "buyer.device_id", limits.buyer_field_bytes_max, required=False)
    if not request.lines:
        raise InvalidArgument("lines", "must not be empty")
    if len(request.lines) > limits.lines_per_order_max:
        raise InvalidArgument("lines", f"has more than {limits.lines_per_order_max} items")
    lines = []
    for index, (sku_id, quantity) in enumerate(request.lines):
        text(sku_id, f"lines[{index}].sku_id", limits.name_bytes_max)
        integer(quantity, f"lines[{index}].quantity", 1, limits.codes_per_line_max)
        lines.append((sku_id, quantity))
    if sum(quantity for _, quantity in lines) > limits.codes_per_order_max:
        raise InvalidArgument("lines", f"more than {limits.codes_per_order_max} codes in all")
    hold_seconds = request.hold_seconds or hold_seconds_default
    integer(hold_seconds, "hold_seconds", 1, limits.hold_seconds_max)
    integer(request.account_created_ms, "buyer.account_created_ms", 0, limits.time_ms_max)
    if len(request.verifications) > limits.verifications_per_order_max:
        raise InvalidArgument("verifications_passed",
                              f"has more than {limits.verifications_per_order_max} items")
    for index, name in enumerate(request.verifications):
        text(name, f"verifications_passed[{index}]", limits.name_bytes_max)
    text(request.recipient, "recipient", limits.recipient_bytes_max, required=False)
    return {"recipient": request.recipient, "account": request.account, "ip": request.ip,
            "device": request.device,
            "lines": lines, "hold_ms": hold_seconds * 1000,
            "phone_bound": bool(request.phone_bound),
            "account_created_ms": request.account_created_ms,
            "verifications": sorted(set(request.verifications))}


def validate_reference(reference: str) -> None:
    text(reference, "payment_reference", limits.payment_reference_bytes_max)
