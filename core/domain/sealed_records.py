"""Records whose `secret` is stored sealed: the JSON of a dataclass with its `secret` field
replaced by `secret_sealed` (sealed by the engine for one purpose per record, opened only in
memory). Suppliers (kamicore.domain.suppliers) and webhook endpoints (kamicore.domain.webhooks)
keep their signing secrets this way."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from ..engine import InvalidArgument


def encode(record, sealed: bytes) -> bytes:
    """The stored form of dataclass `record`, `sealed` in place of its secret."""
    fields = dataclasses.asdict(record)
    del fields["secret"]
    fields["secret_sealed"] = sealed.hex()
    return json.dumps(fields, sort_keys=True).encode()


def check_secret(secret, field: str, required: bool, bytes_min: int, bytes_max: int) -> None:
    """A signing secret of bytes_min-bytes_max bytes, or InvalidArgument naming `field`; an
    empty one passes when not `required` (an update keeping the stored secret)."""
    if not isinstance(secret, bytes):
        raise InvalidArgument(field, "must be bytes")
    if (secret or required) and not bytes_min <= len(secret) <= bytes_max:
        raise InvalidArgument(field, f"must be {bytes_min}-{bytes_max} bytes")


def sealed_of(value: bytes) -> bytes:
    """The sealed secret of a stored record (to keep it through an update)."""
    return bytes.fromhex(json.loads(value)["secret_sealed"])


class Decoder:
    """Stored value -> its record with the secret opened, one decoded copy per stored value
    (at most `cached_max` kept). `build(fields, secret)` makes the record from the stored
    fields; `purpose(fields)` names what the secret was sealed for."""

    def __init__(self, build: Callable, purpose: Callable[[dict], bytes], cached_max: int):
        self.build, self.purpose, self.cached_max = build, purpose, cached_max
        self._decoded: dict[bytes, object] = {}

    def __call__(self, view, value: bytes):
        record = self._decoded.get(value)
        if record is None:
            fields = json.loads(value)
            sealed = bytes.fromhex(fields.pop("secret_sealed"))
            secret = view.open_secret(self.purpose(fields), sealed)
            if len(self._decoded) >= self.cached_max:
                self._decoded.clear()
            record = self._decoded[value] = self.build(fields, secret)
        return record
