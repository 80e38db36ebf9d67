"""A supplier's verified answer -> Outcome / Purchase, the same for both transports.

Each connector checks the answer's signature, turns it into a plain dict with the proto's field
names (results as "SUCCEEDED"...), and hands it here. Whatever does not make sense for the call
(a result it cannot give, another request's id, a SUCCEEDED purchase without its codes) is
UNKNOWN: kamicore asks again rather than guessing.
"""

from __future__ import annotations

from kamicore import limits
from kamicore.connectors.base import Outcome, Purchase, Result
from kamicore.connectors.signing import clean_message

TOP_UP_RESULTS = (Result.SUCCEEDED, Result.FAILED, Result.PENDING)
QUERY_RESULTS = (*TOP_UP_RESULTS, Result.NOT_FOUND)
PURCHASE_RESULTS = TOP_UP_RESULTS
_BY_NAME = {result.value: result for result in Result if result is not Result.UNKNOWN}


def unknown(message: str, latency_ms: int) -> Outcome:
    return Outcome(Result.UNKNOWN, message=clean_message(message), latency_ms=latency_ms)


def _checked(answer: dict, request_id: str, allowed) -> tuple[Result | None, str]:
    """(result, "") when the answer is one of `allowed` for `request_id`, else (None, why)."""
    if answer.get("request_id") != request_id:
        return None, "the answer is for another request id"
    result = _BY_NAME.get(answer.get("result"))
    if result not in allowed:
        return None, f"the answer's result is not one of {', '.join(r.value for r in allowed)}"
    return result, ""


def outcome(answer: dict, request_id: str, allowed, latency_ms: int) -> Outcome:
    result, why = _checked(answer, request_id, allowed)
    if result is None:
        return unknown(why, latency_ms)
    reference = answer.get("supplier_reference") or ""
    if not isinstance(reference, str) or len(reference.encode("utf-8", "replace")) \
            > limits.supplier_reference_bytes_max:
        return unknown("the answer's supplier_reference is not a short string", latency_ms)
    return Outcome(result, supplier_reference=reference,
                   message=clean_message(answer.get("message", "")), latency_ms=latency_ms)


def _integer(value) -> int | None:
    """JSON numbers, or decimal strings (proto3 JSON writes int64 so)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and len(value) <= 20:
        return int(value)
    return None


def purchase(answer: dict, request_id: str, quantity: int, latency_ms: int) -> Purchase:
    result, why = _checked(answer, request_id, PURCHASE_RESULTS)
    message = clean_message(answer.get("message", ""))
    if result is None:
        return Purchase(Result.UNKNOWN, message=why, latency_ms=latency_ms)
    if result is not Result.SUCCEEDED:
        return Purchase(result, message=message, latency_ms=latency_ms)
    codes = answer.get("codes")
    unit_cost = _integer(answer.get("unit_cost_micros", 0))
    valid_until = _integer(answer.get("valid_until_ms", 0))
    batch_id = answer.get("batch_id")
    currency = answer.get("currency")
    if not isinstance(codes, list | tuple) or not all(isinstance(code, str) for code in codes):
        why = "the answer's codes are not a list of strings"
    elif len(codes) != quantity:
        why = f"the answer has {len(codes)} codes for a quantity of {quantity}"
    elif not isinstance(batch_id, str) or not batch_id \
            or len(batch_id.encode("utf-8", "replace")) > limits.name_bytes_max:
        why = f"the answer's batch_id is not a string of 1-{limits.name_bytes_max} bytes"
    elif unit_cost is None or not 0 <= unit_cost <= limits.unit_cost_micros_max:
        why = "the answer's unit_cost_micros is out of range"
    elif not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        why = "the answer's currency is not an ISO 4217 code"
    elif valid_until is None or not 0 <= valid_until <= limits.time_ms_max:
        why = "the answer's valid_until_ms is out of range"
    else:
        return Purchase(Result.SUCCEEDED, codes=tuple(codes), batch_id=batch_id,
                        unit_cost_micros=unit_cost, currency=currency.upper(),
                        valid_until_ms=valid_until, message=message, latency_ms=latency_ms)
    return Purchase(Result.UNKNOWN, message=why, latency_ms=latency_ms)
