"""Signing of supplier calls, answers and callbacks, and the callback document.

Both ways, both transports: `x-kamicore-timestamp` (unix ms) and `x-kamicore-signature` = hex
HMAC-SHA256(secret, f"{timestamp_ms}.".encode() + body), where body is the serialized protobuf
(gRPC) or the JSON body (HTTP). The timestamp is inside the signature, and a signature more than
limits.callback_clock_skew_seconds_max away from our clock is refused, so a captured callback
or answer cannot be replayed later (within the window, the callback handler refuses a second
answer for the same attempt).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from kamicore import limits
from kamicore.connectors.base import Result

TIMESTAMP_HEADER = "x-kamicore-timestamp"
SIGNATURE_HEADER = "x-kamicore-signature"
BAD_SIGNATURE = "bad_signature"
STALE_TIMESTAMP = "stale_timestamp"
CALLBACK_RESULTS = (Result.SUCCEEDED, Result.FAILED, Result.PENDING)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sign(secret: bytes, timestamp_ms: int, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of f"{timestamp_ms}." + body."""
    return hmac.new(secret, f"{timestamp_ms}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp_ms: int, body: bytes, signature: str,
           now_ms: int) -> str | None:
    """None when `signature` is ours over (timestamp_ms, body) and the timestamp is within the
    clock skew of now_ms; else the reason: BAD_SIGNATURE or STALE_TIMESTAMP (a correct signature
    over an old or future timestamp). Compares in constant time."""
    expected = sign(secret, timestamp_ms, body).encode()
    given = signature.strip().lower().encode("utf-8", "replace") if isinstance(
        signature, str) else b""
    if not hmac.compare_digest(expected, given):
        return BAD_SIGNATURE
    if abs(now_ms - timestamp_ms) > limits.callback_clock_skew_seconds_max * 1000:
        return STALE_TIMESTAMP
    return None


def signed_headers(secret: bytes, body: bytes, timestamp_ms: int | None = None
                   ) -> dict[str, str]:
    """The two headers (or gRPC metadata keys) that sign `body` now."""
    timestamp_ms = now_ms() if timestamp_ms is None else timestamp_ms
    return {TIMESTAMP_HEADER: str(timestamp_ms),
            SIGNATURE_HEADER: sign(secret, timestamp_ms, body)}


def parse_timestamp(text: str | None) -> int | None:
    """A header's unix ms, or None when missing or not a plain non-negative integer."""
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    return int(text)


def verify_headers(secret: bytes, headers, body: bytes) -> str | None:
    """verify() on what a mapping of headers or metadata (lowercase keys) carries; a missing
    or malformed header is BAD_SIGNATURE."""
    timestamp_ms = parse_timestamp(headers.get(TIMESTAMP_HEADER))
    signature = headers.get(SIGNATURE_HEADER)
    if timestamp_ms is None or not isinstance(signature, str):
        return BAD_SIGNATURE
    return verify(secret, timestamp_ms, body, signature, now_ms())


@dataclass(frozen=True)
class Callback:
    """A supplier's callback: the result of a PENDING top-up."""

    request_id: str
    result: Result  # SUCCEEDED, FAILED or PENDING
    supplier_reference: str = ""
    message: str = ""

    def document(self) -> bytes:
        """The JSON body suppliers send (and the simulator builds)."""
        return json.dumps({"request_id": self.request_id, "result": self.result.value,
                           "supplier_reference": self.supplier_reference,
                           "message": self.message}, separators=(",", ":")).encode()


def _text(document: dict, field: str, bytes_max: int, required: bool = False) -> str:
    value = document.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"{field}: not a string")
    if required and not value:
        raise ValueError(f"{field}: missing")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValueError(f"{field}: not UTF-8") from None
    if size > bytes_max:
        raise ValueError(f"{field}: longer than {bytes_max} bytes")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise ValueError(f"{field}: control characters")
    return value


def clean_message(value) -> str:
    """A supplier's free-text message as kamicore keeps it: control characters made spaces,
    cut to limits.supplier_message_bytes_max (it is shown to operators, never trusted)."""
    if not isinstance(value, str):
        return ""
    value = "".join(" " if ord(character) < 32 or ord(character) == 127 else character
                    for character in value)
    data = value.encode("utf-8", "replace")[:limits.supplier_message_bytes_max]
    return data.decode("utf-8", "ignore")


def parse_callback(body: bytes) -> Callback:
    """The callback document in `body`; ValueError("<field>: what is wrong") otherwise. Fields
    other than the four are ignored (suppliers add their own); the message is cleaned, not
    refused (clean_message)."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("body: not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("body: not a JSON object")
    request_id = _text(document, "request_id", limits.supplier_request_id_bytes_max, True)
    result_name = _text(document, "result", 16, True)
    results = {result.value: result for result in CALLBACK_RESULTS}
    if result_name not in results:
        raise ValueError(f"result: not one of {', '.join(results)}")
    return Callback(
        request_id=request_id, result=results[result_name],
        supplier_reference=_text(document, "supplier_reference",
                                 limits.supplier_reference_bytes_max),
        message=clean_message(document.get("message", "")))
