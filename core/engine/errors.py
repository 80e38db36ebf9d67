"""What the engine raises: bad input, and use after close."""

from __future__ import annotations


class InvalidArgument(ValueError):
    """Bad input from a caller; `field` names what was wrong. Nothing was changed."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class EngineClosed(RuntimeError):
    """The engine was closed; nothing more is accepted."""
