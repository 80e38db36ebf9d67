"""Input checks shared by every layer: each names the field it refuses, and changes nothing.

Per-code problems (empty, too long, control characters, not UTF-8) are not errors here: they
are per-item statuses the compiled engine gives (a batch with one bad code still imports the
rest).
"""

from __future__ import annotations

from .._codec import has_control_character
from .errors import InvalidArgument


def text(value, field: str, bytes_max: int, required: bool = True) -> bytes:
    """UTF-8 text (str or bytes) of at most `bytes_max` bytes without control characters."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidArgument(field, "must be text")
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > bytes_max:
        raise InvalidArgument(field, f"is longer than {bytes_max} bytes")
    if has_control_character(value):
        raise InvalidArgument(field, "contains a control character")
    return value


def integer(value, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(field, "must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high}")
    return value


def items(values, field: str, items_max: int) -> list:
    """A non-empty list of at most `items_max` items."""
    values = list(values)
    if not values:
        raise InvalidArgument(field, "must not be empty")
    if len(values) > items_max:
        raise InvalidArgument(field, f"has more than {items_max} items")
    return values


def code(value, field: str) -> bytes:
    """A code as bytes; what is wrong with its content is the engine's per-item status."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise InvalidArgument(field, "must be text")


def within(field: str, index: int, check, *args):
    """Run `check`; on InvalidArgument name the item: `field[index].<what it named>`."""
    try:
        return check(*args)
    except InvalidArgument as error:
        raise InvalidArgument(f"{field}[{index}].{error.field}", error.message) from None
