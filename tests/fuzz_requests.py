"""Hostile requests for the fuzz test (tests/test_e2e_fuzz.py), as raw bytes on the wire.

Every request is built from the proto descriptors, so a field added to the API is fuzzed without
a change here: valid messages carrying hostile values (boundary and out-of-range numbers,
unknown enum numbers, control characters, strings and repeated fields just under and past the
server's limits), the same with unknown fields appended, truncated or with a bit flipped,
invalid UTF-8 in a string field at the wire level, random bytes, and messages past the
server's largest message. Streams mix all of these, good messages and garbage in any order.
The last section sends them: raw bytes, as a client that skips the generated stubs would.
"""

from __future__ import annotations

import dataclasses

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import strategies as st

from kamicore import limits
from kamicore.config import Config
from kamicore.grpc.worker import SERVICE_NAMES
from kamicore.v1 import inventory_pb2

from .events_support import taken
from .server_harness import bearer

MESSAGE_BYTES_MAX = Config().message_bytes_max  # what the fuzzed server runs with
STRING_LIMITS = sorted({limits.code_bytes_max, limits.name_bytes_max, limits.terminal_bytes_max,
                        limits.request_id_bytes_max, limits.order_id_bytes_max,
                        limits.idempotency_key_bytes_max, limits.account_bytes_max,
                        limits.buyer_field_bytes_max, limits.payment_reference_bytes_max,
                        limits.display_name_bytes_max, limits.region_bytes_max})
STRING_LENGTHS = sorted({n + delta for n in STRING_LIMITS for delta in (-1, 0, 1)}
                        | {0, 4096, 70_000})
COUNT_LIMITS = sorted({limits.codes_per_batch_max, limits.codes_per_chunk_max,
                       limits.lines_per_order_max, limits.prices_per_sku_max,
                       limits.regions_per_sku_max, limits.codes_per_line_max})
REPEAT_COUNTS = sorted({n + delta for n in COUNT_LIMITS for delta in (0, 1)})
HOSTILE_TEXT = ["", " ", "\x00", "a\x00b", "\n", "\x7f", "\x1b[31m", "\u0085", "\u2028",
                "\u202e", "\ufeff", "\U0010ffff", "/", "storefront:web/", "../..", "%s%n",
                "ＣＮＹ", "ÄÖÜ", "cny", "CN", "CNYY", "DROP TABLE", "-", "--", "   -  "]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"a\x80b", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
            b"\xc0\xaf", b"\xe2\x82", b"\xfe\xfe\xff\xff"]
INT_BOUNDARIES = [0, 1, -1, 999, 1000, 1001, 86_400, 86_401, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                  2**53 + 1, 10**14, 10**14 + 1, 10**15, 10**15 + 1, 2**62, 2**62 + 1,
                  2**63 - 1, 2**63, 2**64 - 1, -(2**31), -(2**63)]
INT_RANGES = {  # field type -> (low, high)
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
depth_max = 4  # every kamicore request nests fewer messages than this
call_timeout_seconds = 30.0


@dataclasses.dataclass
class Hints:
    """Values the fuzzed server knows (field name -> values), so that hostile requests also
    reach past the lookups: a real SKU with a hostile quantity, a real order with a hostile
    amount, a real code at a terminal."""

    values: dict[str, list]

    def get(self, name: str) -> list:
        return self.values.get(name, [])


# -- values ----------------------------------------------------------------------------------------

def _long_text(length: int, fill: str) -> str:
    """`length` bytes of UTF-8 (fill is one or two bytes wide)."""
    return fill * (length // len(fill.encode())) + "x" * (length % len(fill.encode()))


def strings(name: str, hints: Hints, small: bool = False) -> st.SearchStrategy[str]:
    known = hints.get(name)
    lengths = [length for length in STRING_LENGTHS if not small or length <= 256]
    sized = st.builds(_long_text, st.sampled_from(lengths), st.sampled_from(["x", "é"]))
    hostile = [st.sampled_from(HOSTILE_TEXT), sized,
               st.text(st.characters(exclude_categories=("Cs",)), max_size=24)]
    if known:
        hostile.append(st.builds(lambda value, tail: value + tail, st.sampled_from(known),
                                 st.sampled_from(["\x00", "x", "/x", "\n", " ", "é" * 40])))
    sane = st.sampled_from(known) if known else st.from_regex(r"[a-z0-9-]{1,12}",
                                                              fullmatch=True)
    return _mostly(sane, st.one_of(hostile))


def _mostly(sane: st.SearchStrategy, hostile: st.SearchStrategy) -> st.SearchStrategy:
    """Plausible values most of the time, so that calls get past the first check and the
    hostile value met deeper in the server."""
    return st.one_of(sane, sane, hostile)


def integers(field: FieldDescriptor, hints: Hints) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[field.type]
    boundaries = [value for value in INT_BOUNDARIES if low <= value <= high]
    sane = (st.sampled_from(hints.get(field.name)) if hints.get(field.name)
            else st.integers(max(low, 0), 1000))
    return _mostly(sane, st.one_of(st.sampled_from(boundaries), st.integers(low, high)))


def scalars(field: FieldDescriptor, hints: Hints, depth: int,
            small: bool = False) -> st.SearchStrategy:
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings(field.name, hints, small)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        # proto3 enums are open: any int32 reaches the server
        return _mostly(st.sampled_from(known[1:] or known),
                       st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, hints, depth + 1, small)
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True)
    return integers(field, hints)


def _field_values(field: FieldDescriptor, hints: Hints, depth: int,
                  small: bool) -> st.SearchStrategy:
    element = scalars(field, hints, depth, small)
    if not field.is_repeated:
        return element
    few = st.lists(element, min_size=1, max_size=3)
    if small:
        return _mostly(few, st.lists(element, max_size=4))
    # many copies of one (small) value, at and just past the limits of repeated fields
    many = st.builds(lambda value, count: [value] * count, scalars(field, hints, depth, True),
                     st.sampled_from(REPEAT_COUNTS))
    return _mostly(few, st.one_of(st.lists(element, max_size=4), many))


def _build(message_class, values: dict):
    message = message_class()
    for name, value in values.items():
        field = message_class.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated:
            target = getattr(message, name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, name).CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def message_class_of(descriptor):
    from google.protobuf import message_factory
    return message_factory.GetMessageClass(descriptor)


def messages(descriptor, hints: Hints, depth: int = 0,
             small: bool = False) -> st.SearchStrategy:
    """Well-formed messages of `descriptor`, mostly plausible, with hostile values; any field
    may be left out.
    `small`: short strings and few repeated items only (an item of a long repeated field)."""
    message_class = message_class_of(descriptor)
    if depth >= depth_max:
        return st.just(message_class())
    fields = {field.name: st.deferred(
        lambda field=field: _field_values(field, hints, depth, small))
        for field in descriptor.fields}
    # every field set (leaving out only what a oneof excludes), or any of them left out
    every = st.fixed_dictionaries(fields)
    some = st.fixed_dictionaries({}, optional=fields)
    return _mostly(every, some).map(lambda values: _build(message_class, values))


# -- bytes on the wire -----------------------------------------------------------------------------

def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string_paths(descriptor, depth: int = 0) -> list[tuple[int, ...]]:
    """Field-number paths to every string field, through nested messages."""
    paths = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            paths.append((field.number,))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < depth_max:
            paths += [(field.number, *rest) for rest in string_paths(field.message_type,
                                                                     depth + 1)]
    return paths


def nested(path: tuple[int, ...], payload: bytes) -> bytes:
    """`payload` as the value of the string field at `path`: a later occurrence of a singular
    field replaces (a message field merges into) what came before."""
    inner = payload
    for number in reversed(path):
        inner = length_delimited(number, inner)
    return inner


@st.composite
def unknown_fields(draw) -> bytes:
    number = draw(st.sampled_from([15, 99, 1000, 2**29 - 1]))
    kind = draw(st.sampled_from(["varint", "bytes", "fixed32", "fixed64"]))
    if kind == "varint":
        return varint(number << 3) + varint(draw(st.integers(0, 2**64 - 1)))
    if kind == "fixed32":
        return varint(number << 3 | 5) + draw(st.binary(min_size=4, max_size=4))
    if kind == "fixed64":
        return varint(number << 3 | 1) + draw(st.binary(min_size=8, max_size=8))
    size = draw(st.sampled_from([0, 1, 100, 70_000]))
    return length_delimited(number, b"\x01" * size)


@st.composite
def mangled(draw, message: bytes) -> bytes:
    """`message` truncated, with a bit flipped, or with garbage appended."""
    how = draw(st.sampled_from(["truncate", "flip", "append"]))
    if not message or how == "append":
        return message + draw(st.binary(min_size=1, max_size=16))
    index = draw(st.integers(0, len(message) - 1))
    if how == "truncate":
        return message[:index]
    flipped = bytearray(message)
    flipped[index] ^= 1 << draw(st.integers(0, 7))
    return bytes(flipped)


@st.composite
def wire_messages(draw, descriptor, hints: Hints, valid=None) -> bytes:
    """One message of `descriptor` as bytes, in one of the hostile shapes; `valid` draws the
    well-formed messages they start from (default: any of `descriptor`)."""
    shape = draw(st.sampled_from(["valid", "valid", "valid", "unknown", "mangled", "bad_utf8",
                                  "random", "oversized"]))
    if shape == "random":
        return draw(st.binary(max_size=64))
    message = draw(valid if valid is not None else messages(descriptor, hints))
    message = message.SerializeToString()
    if shape == "unknown":
        return message + draw(unknown_fields())
    if shape == "mangled":
        return draw(mangled(message))
    paths = string_paths(descriptor)
    if shape == "bad_utf8" and paths:
        bad = draw(st.sampled_from(BAD_UTF8))
        return message + nested(draw(st.sampled_from(paths)), b"ok" + bad)
    if shape == "oversized" and paths:
        size = draw(st.sampled_from([MESSAGE_BYTES_MAX - 64, MESSAGE_BYTES_MAX + 1]))
        return message + nested(draw(st.sampled_from(paths)), b"x" * size)
    return message


def stream_of(first, rest, limit: int = 6) -> st.SearchStrategy[list[bytes]]:
    """A request stream: `first` then `rest`, each element possibly garbage, in any order."""
    garbage = st.binary(max_size=32)
    element = st.one_of(rest, rest, first, garbage)
    return st.one_of(
        st.builds(lambda head, tail: [head, *tail], first, st.lists(element, max_size=limit)),
        st.builds(lambda head, tail: [head, *tail], garbage, st.lists(element, max_size=limit)),
        st.lists(element, max_size=limit))


# -- calls -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Method:
    """One kamicore.v1 RPC, as its descriptor declares it."""

    name: str  # /kamicore.v1.Service/Method
    request: object  # its request's descriptor
    response_class: type
    client_streaming: bool
    server_streaming: bool

    @property
    def not_a_request(self) -> str:
        return f"request: request is not a valid {self.request.full_name}"


def _methods() -> list[Method]:
    pool = descriptor_pool.Default()
    return [Method(f"/{service.full_name}/{method.name}", method.input_type,
                   message_class_of(method.output_type), method.client_streaming,
                   method.server_streaming)
            for service in map(pool.FindServiceByName, SERVICE_NAMES)
            for method in service.methods]


METHODS = _methods()


def requests_for(method: Method, hints: Hints) -> st.SearchStrategy[list[bytes]]:
    """What one call sends: one message, or a stream of them."""
    if not method.client_streaming:
        return wire_messages(method.request, hints).map(lambda raw: [raw])
    if method.request.full_name == "kamicore.v1.ImportCodesRequest":
        request = inventory_pb2.ImportCodesRequest
        header = messages(inventory_pb2.ImportHeader.DESCRIPTOR, hints).map(
            lambda value: request(header=value))
        chunk = messages(inventory_pb2.CodeChunk.DESCRIPTOR, hints).map(
            lambda value: request(chunk=value))
        return stream_of(wire_messages(method.request, hints, header),
                         wire_messages(method.request, hints, chunk))
    one = wire_messages(method.request, hints)
    return stream_of(one, one)


@dataclasses.dataclass
class Outcome:
    """How a call ended, and the reply messages (raw) that came before."""

    code: grpc.StatusCode
    details: str
    replies: list[bytes]


def metadata(key: str | None):
    if key is None:
        return []
    if key.startswith("Basic "):
        return [("authorization", key)]
    return bearer(key)


def call(channel, method: Method, sent: list[bytes], key: str | None) -> Outcome:
    """Send `sent` as they are (no serializer) with `key`, however the method streams."""
    options = {"metadata": metadata(key), "timeout": call_timeout_seconds}
    replies: list[bytes] = []
    try:
        if method.client_streaming and method.server_streaming:
            replies.extend(channel.stream_stream(method.name)(iter(sent), **options))
        elif method.client_streaming:
            replies.append(channel.stream_unary(method.name)(iter(sent), **options))
        elif method.server_streaming:  # WatchEvents: taken, it streams until cancelled
            stream = channel.unary_stream(method.name)(sent[0], **options)
            if taken(stream):  # the server counts it CANCELLED
                return Outcome(grpc.StatusCode.CANCELLED, "taken", replies)
            replies.extend(stream)  # refused: raises its status
        else:
            replies.append(channel.unary_unary(method.name)(sent[0], **options))
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", replies)
    return Outcome(grpc.StatusCode.OK, "", replies)
