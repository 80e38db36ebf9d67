"""Code states and per-operation status enums.

Each operation has one status enum. Its members after the success member are listed in
precedence order: when several things are wrong with an item, the item gets the first one that
applies, and the engine checks them in exactly this order. Values are part of the wire and
storage contract: never renumber, only append.

The compiled engine (ext/) uses the same numbers as C constants; tests/test_statuses.py holds
the two equal.
"""

from __future__ import annotations

import enum


class CodeState(enum.IntEnum):
    """Where a code is in its life. Stored in every code record."""

    AVAILABLE = 1  # in stock, sellable when inside its validity window
    RESERVED = 2  # held for an unpaid order until its hold deadline
    SOLD = 3  # paid and delivered to the buyer
    REDEEMED = 4  # used at a terminal; final
    FROZEN = 5  # taken out of circulation by an operator; unfreeze restores the prior state
    INVALID = 6  # reported as not working by its buyer; final
    VOID = 7  # sale reversed (refund); final


class ImportStatus(enum.IntEnum):
    IMPORTED = 1
    EMPTY = 2  # nothing left after removing spaces and dashes
    TOO_LONG = 3  # more than code_bytes_max bytes
    CONTROL_CHARACTER = 4  # contains a byte below 0x20 or 0x7f
    NOT_UTF8 = 5  # not valid UTF-8 text: it could never be shown to its buyer
    DUPLICATE = 6  # the same normalised code is already stored (or earlier in this import)


class ImportBatchStatus(enum.IntEnum):
    """Outcome of a whole import call (the per-code outcomes are ImportStatus)."""

    OK = 1
    BATCH_MISMATCH = 2  # the batch id exists with another sku, supplier, cost or validity
    STORAGE_FULL = 3  # the data file is full; nothing of this call was stored


class ReserveStatus(enum.IntEnum):
    RESERVED = 1  # also the answer to a retry of the same order with the same lines
    ORDER_ID_CONFLICT = 2  # the order id exists with other lines
    SKU_NOT_FOUND = 3
    INSUFFICIENT_STOCK = 4  # a line cannot be filled with sellable codes; nothing reserved
    STORAGE_FULL = 5


class ConfirmStatus(enum.IntEnum):
    SOLD = 1  # the order's codes are sold to its buyer (also the answer to a retry)
    ORDER_NOT_FOUND = 2
    ORDER_RELEASED_NO_STOCK = 3  # the hold was released and stock no longer covers it: refund
    STORAGE_FULL = 4


class ReleaseStatus(enum.IntEnum):
    RELEASED = 1  # codes are back in stock (also the answer to a retry)
    ORDER_NOT_FOUND = 2
    ORDER_SOLD = 3  # a paid order is not released; void its codes instead
    STORAGE_FULL = 4


class RedeemStatus(enum.IntEnum):
    REDEEMED = 1  # redeemed now, or the same terminal retried the same request id
    MALFORMED = 2  # empty, too long, control characters or not UTF-8; never looked up
    REQUEST_ID_CONFLICT = 3  # this terminal used the request id for another code
    NOT_FOUND = 4
    VOID = 5
    INVALID = 6
    FROZEN = 7
    ALREADY_REDEEMED = 8  # with when and by which terminal
    NOT_SOLD = 9  # in stock or reserved: never sold, so it cannot be redeemed
    NOT_YET_VALID = 10
    EXPIRED = 11
    STORAGE_FULL = 12


class CodeOpStatus(enum.IntEnum):
    """Outcome of freeze, unfreeze and void for one code."""

    DONE = 1
    MALFORMED = 2
    NOT_FOUND = 3
    WRONG_STATE = 4  # the transition is not on the state diagram from the code's state
    STORAGE_FULL = 5


class ReportInvalidStatus(enum.IntEnum):
    REISSUED = 1  # the code is INVALID and a replacement was sold to the same order
    NO_REPLACEMENT = 2  # the code is INVALID; no sellable stock to replace it: refund
    ORDER_NOT_FOUND = 3
    CODE_NOT_IN_ORDER = 4
    NOT_SOLD = 5  # only a sold, unredeemed code can be reported invalid
    STORAGE_FULL = 6


class VerifyStatus(enum.IntEnum):
    FOUND = 1
    MALFORMED = 2
    NOT_FOUND = 3
