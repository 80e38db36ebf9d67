"""Signing of supplier calls, answers and callbacks, and the callback document
(kamicore.connectors.signing): what a forged, tampered, replayed or malformed callback gets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kamicore import limits
from kamicore.connectors import Result
from kamicore.connectors.signing import (
    BAD_SIGNATURE, STALE_TIMESTAMP, Callback, clean_message, parse_callback, parse_timestamp,
    sign, signed_headers, verify, verify_headers,
)

SECRET = b"s" * 32
NOW_MS = 1_800_000_000_000
SKEW_MS = limits.callback_clock_skew_seconds_max * 1000
BODY = b'{"request_id":"r-1","result":"SUCCEEDED"}'


def test_a_signature_verifies_with_its_secret_body_and_timestamp():
    signature = sign(SECRET, NOW_MS, BODY)
    assert len(signature) == 64 and int(signature, 16) >= 0
    assert verify(SECRET, NOW_MS, BODY, signature, NOW_MS) is None
    assert verify(SECRET, NOW_MS, BODY, signature.upper(), NOW_MS) is None


def test_the_documented_formula():
    import hashlib
    import hmac
    expected = hmac.new(SECRET, b"1800000000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW_MS, BODY) == expected


@pytest.mark.parametrize("change", [
    lambda body, ts, secret, sig: (body + b" ", ts, secret, sig),
    lambda body, ts, secret, sig: (body.replace(b"SUCCEEDED", b"FAILED"), ts, secret, sig),
    lambda body, ts, secret, sig: (body, ts + 1, secret, sig),  # the timestamp is signed too
    lambda body, ts, secret, sig: (body, ts, b"another secret", sig),
    lambda body, ts, secret, sig: (body, ts, secret, ""),
    lambda body, ts, secret, sig: (body, ts, secret, "zz" * 32),
    lambda body, ts, secret, sig: (body, ts, secret, "é" * 64),
    lambda body, ts, secret, sig: (body, ts, secret, sig[:-1]),
], ids=["trailing space", "result changed", "timestamp changed", "wrong secret",
        "empty signature", "not hex", "not ASCII", "truncated"])
def test_anything_changed_is_a_bad_signature(change):
    body, timestamp_ms, secret, signature = change(BODY, NOW_MS, SECRET,
                                                   sign(SECRET, NOW_MS, BODY))
    assert verify(secret, timestamp_ms, body, signature, NOW_MS) == BAD_SIGNATURE


@pytest.mark.parametrize("offset_ms", [SKEW_MS + 1, -(SKEW_MS + 1), 10 * SKEW_MS],
                         ids=["just past", "future", "long ago"])
def test_a_correct_signature_far_from_our_clock_is_stale(offset_ms):
    timestamp_ms = NOW_MS - offset_ms  # positive offset: signed in the past
    signature = sign(SECRET, timestamp_ms, BODY)
    assert verify(SECRET, timestamp_ms, BODY, signature, NOW_MS) == STALE_TIMESTAMP


@pytest.mark.parametrize("offset_ms", [SKEW_MS, -SKEW_MS, 0])
def test_a_signature_within_the_skew_verifies(offset_ms):
    timestamp_ms = NOW_MS - offset_ms
    assert verify(SECRET, timestamp_ms, BODY, sign(SECRET, timestamp_ms, BODY), NOW_MS) is None


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512),
       timestamp_ms=st.integers(0, 2**62), skew_ms=st.integers(-SKEW_MS, SKEW_MS))
def test_every_signed_body_verifies(secret, body, timestamp_ms, skew_ms):
    signature = sign(secret, timestamp_ms, body)
    assert verify(secret, timestamp_ms, body, signature, timestamp_ms + skew_ms) is None


@given(body=st.binary(min_size=1, max_size=256), data=st.data())
def test_tampering_with_any_byte_is_always_detected(body, data):
    signature = sign(SECRET, NOW_MS, body)
    index = data.draw(st.integers(0, len(body) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    tampered = body[:index] + bytes([body[index] ^ flip]) + body[index + 1:]
    assert verify(SECRET, NOW_MS, tampered, signature, NOW_MS) == BAD_SIGNATURE
    cut = data.draw(st.integers(0, len(body) - 1), label="cut")
    assert verify(SECRET, NOW_MS, body[:cut], signature, NOW_MS) == BAD_SIGNATURE


@given(secret=st.binary(min_size=1, max_size=64), other=st.binary(min_size=1, max_size=64))
def test_another_secret_never_verifies(secret, other):
    if secret == other:
        return
    signature = sign(other, NOW_MS, BODY)
    assert verify(secret, NOW_MS, BODY, signature, NOW_MS) == BAD_SIGNATURE


def test_headers_round_trip_and_missing_headers_are_bad():
    headers = signed_headers(SECRET, BODY)
    assert set(headers) == {"x-kamicore-timestamp", "x-kamicore-signature"}
    assert verify_headers(SECRET, headers, BODY) is None
    assert verify_headers(SECRET, headers, BODY + b"x") == BAD_SIGNATURE
    assert verify_headers(SECRET, {"x-kamicore-signature": headers["x-kamicore-signature"]},
                          BODY) == BAD_SIGNATURE
    assert verify_headers(SECRET, {"x-kamicore-timestamp": headers["x-kamicore-timestamp"]},
                          BODY) == BAD_SIGNATURE
    assert verify_headers(SECRET, {**headers, "x-kamicore-timestamp": "soon"},
                          BODY) == BAD_SIGNATURE


@pytest.mark.parametrize("text,expected", [
    ("1800000000000", 1800000000000), (" 12 ", 12), ("", None), ("-5", None), ("1e3", None),
    ("١٢", None), ("9" * 20, None), (None, None)])
def test_timestamps_are_plain_integers(text, expected):
    assert parse_timestamp(text) == expected


def _document(**fields) -> bytes:
    document = {"request_id": "r-1", "result": "SUCCEEDED", "supplier_reference": "ref-9",
                "message": "ok"}
    document.update(fields)
    return json.dumps({name: value for name, value in document.items() if value is not ...}
                      ).encode()


def test_a_callback_document_parses():
    assert parse_callback(_document(extra_field=1)) == Callback(
        "r-1", Result.SUCCEEDED, "ref-9", "ok")
    assert parse_callback(_document(result="FAILED", supplier_reference=..., message=...)) \
        == Callback("r-1", Result.FAILED, "", "")
    callback = Callback("r-2", Result.PENDING, "x", "later")
    assert parse_callback(callback.document()) == callback


@pytest.mark.parametrize("body,error", [
    (b"not json", "body: not JSON"),
    (b"\xff\xfe", "body: not JSON"),
    (b"[1, 2]", "body: not a JSON object"),
    (_document(request_id=...), "request_id: missing"),
    (_document(request_id=""), "request_id: missing"),
    (_document(request_id=7), "request_id: not a string"),
    (_document(request_id="r" * (limits.supplier_request_id_bytes_max + 1)),
     f"request_id: longer than {limits.supplier_request_id_bytes_max} bytes"),
    (_document(request_id="r\n1"), "request_id: control characters"),
    (_document(request_id="\ud800"), "request_id: not UTF-8"),
    (_document(result=...), "result: missing"),
    (_document(result="NOT_FOUND"), "result: not one of SUCCEEDED, FAILED, PENDING"),
    (_document(result="succeeded"), "result: not one of SUCCEEDED, FAILED, PENDING"),
    (_document(result=["SUCCEEDED"]), "result: not a string"),
    (_document(supplier_reference=5), "supplier_reference: not a string"),
    (_document(supplier_reference="x" * (limits.supplier_reference_bytes_max + 1)),
     f"supplier_reference: longer than {limits.supplier_reference_bytes_max} bytes"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_bad_callback_document_names_its_field(body, error):
    with pytest.raises(ValueError) as raised:
        parse_callback(body)
    assert str(raised.value) == error


def test_a_suppliers_message_is_cleaned_not_refused():
    long = "é" * limits.supplier_message_bytes_max
    parsed = parse_callback(_document(message="line one\nline\x00two"))
    assert parsed.message == "line one line two"
    cut = parse_callback(_document(message=long)).message
    assert long.startswith(cut) and len(cut.encode()) <= limits.supplier_message_bytes_max
    assert parse_callback(_document(message=12)).message == ""
    assert clean_message(None) == ""
