"""Risk reviews: orders the risk rules sent to a person. The order's codes stay reserved for its
hold; a person approves (the buyer may pay) or rejects (the codes go back) it with
Risk/DecideReview, and a review still undecided when the hold lapses expires with it (the hold
sweeper, kamicore.domain.orders.sweep).

Tables: `risk_reviews`: order id -> JSON {state, risk, created_ms, expires_ms, decided_by,
decided_ms}; `risk_review_queue`: created ms (8 bytes, big-endian) + order id -> b"", the
pending ones, oldest first.
"""

from __future__ import annotations

import json

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import integer

REVIEWS_TABLE = "risk_reviews"
QUEUE_TABLE = "risk_review_queue"
PENDING, APPROVED, REJECTED, EXPIRED = "PENDING", "APPROVED", "REJECTED", "EXPIRED"


def _queue_key(review: dict, order_id: bytes) -> bytes:
    return review["created_ms"].to_bytes(8, "big") + order_id


def get(transaction, order_id: bytes) -> dict | None:
    value = transaction.get(REVIEWS_TABLE, order_id)
    return json.loads(value) if value is not None else None


def _put(transaction, order_id: bytes, review: dict) -> None:
    transaction.put(REVIEWS_TABLE, order_id, json.dumps(review, sort_keys=True).encode())


def open_review(transaction, order_id: bytes, assessment: dict, expires_ms: int) -> None:
    review = {"state": PENDING, "risk": assessment, "created_ms": transaction.now_ms,
              "expires_ms": expires_ms, "decided_by": "", "decided_ms": 0}
    _put(transaction, order_id, review)
    transaction.put(QUEUE_TABLE, _queue_key(review, order_id), b"")


def close(transaction, order_id: bytes, review: dict, state: str, by: str = "") -> dict:
    """A pending review decided or expired; off the queue."""
    review.update(state=state, decided_by=by, decided_ms=transaction.now_ms if by else 0)
    _put(transaction, order_id, review)
    transaction.delete(QUEUE_TABLE, _queue_key(review, order_id))
    return review


def expire(transaction, order_id: bytes) -> None:
    """The order's hold lapsed or it was cancelled: a pending review expires."""
    review = get(transaction, order_id)
    if review is not None and review["state"] == PENDING:
        close(transaction, order_id, review, EXPIRED)


def pending_page(engine, page_size: int, page_token: str) -> tuple[list, str]:
    """-> ([(order id, review)], next page token or "") of pending reviews, oldest first;
    read without waiting for the writer."""
    page_size = page_size or limits.reviews_page_max
    integer(page_size, "page_size", 1, limits.reviews_page_max)
    start = b""
    if page_token:
        try:
            start = bytes.fromhex(page_token) + b"\0"
        except ValueError:
            raise InvalidArgument("page_token", "is not a token from ListReviews") from None
    keys = engine.scan(QUEUE_TABLE, start, page_size + 1)
    page = []
    for key, _ in keys[:page_size]:
        review = engine.get(REVIEWS_TABLE, key[8:])
        if review is not None:
            page.append((key[8:].decode(), json.loads(review)))
    token = keys[page_size - 1][0].hex() if len(keys) > page_size else ""
    return page, token
