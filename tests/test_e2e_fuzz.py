"""Fuzzing every kamicore.v1 RPC over a real socket (issue 9): random bytes, truncated and
bit-flipped messages, invalid UTF-8, strings and repeated fields at and past the limits, hostile
values, unknown fields, streams that turn to garbage — with each role's key, with none and with
made-up ones (tests/fuzz_requests.py builds them).

Whatever arrives, the answer is OK or a status the API documents for a whole-request failure
(INVALID_ARGUMENT naming a field of the request, or saying that the request does not decode;
UNAUTHENTICATED; PERMISSION_DENIED; RESOURCE_EXHAUSTED for a message past the server's largest),
never UNKNOWN or INTERNAL. Every refusal is counted in kamicore_bad_requests_total and writes at
most one log line, rate-limited per (method, reason); the log never holds a traceback or a code.
This file runs a server of its own, so its log and counters hold only what the fuzzer sent.
`make test` runs a short derandomized pass (the same inputs every run), `make soak` many more
examples with fresh randomness (a failure prints the blob that reproduces it).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import re
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kamicore import auth, limits
from kamicore.grpc.refusals import REASONS
from kamicore.v1 import inventory_pb2, orders_pb2

from .e2e_support import assert_no_plaintext, metric_samples, metric_value
from .fuzz_requests import (
    MESSAGE_BYTES_MAX, METHODS, Hints, Method, Outcome, call, message_class_of, metadata,
    requests_for,
)
from .server_harness import (
    Server, buy, new_codes, order_request, pay_request, stocked_sku, workers,
)

BINDINGS = {"storefront": "web", "pos": "T-01", "supplier": "S-1"}
NOT_KEYS = ("none", "revoked", "wrong-secret", "not-bearer", "made-up")
SKU, OTHER_SKU = "fuzz-sku", "fuzz-usd"
fast_examples = 25  # per RPC, in `make test`
soak_examples = 1500  # per RPC, in `make soak`
REASON_OF_CODE = {"UNAUTHENTICATED": "unauthenticated", "PERMISSION_DENIED": "permission_denied",
                  "INVALID_ARGUMENT": "invalid_argument"}
FIELD_PATH = re.compile(r"[a-z_]+(\[\d+\])?")
# refusals a servicer makes itself, as the proto documents them: (method, role) -> codes
SERVICER_REFUSALS = {("/kamicore.v1.Inventory/ImportCodes", "supplier"): {"PERMISSION_DENIED"},
                     ("/kamicore.v1.Suppliers/SupplierCallback", "supplier"):
                         {"PERMISSION_DENIED"},
                     # a cursor past the newest event (or pruned)
                     **{("/kamicore.v1.Events/WatchEvents", role): {"OUT_OF_RANGE"}
                        for role in auth.ROLES}}
REFUSED_LINE = re.compile(r"refused (/\S+) from (a caller without a valid key|\w+ key \w+): "
                          r"(\w+) \(")


class LogTail:
    """The lines the server's processes logged since the last call."""

    def __init__(self, server: Server):
        self.server = server
        self.offsets: dict = {}

    def new_lines(self) -> list[str]:
        lines = []
        for path in self.server.log_paths:
            with open(path, "rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            lines += complete.decode("utf-8", "replace").splitlines()
        return lines


@dataclasses.dataclass
class Fuzzed:
    """The fuzzed server, a channel per worker (likely), a key per kind and what it holds."""

    server: Server
    channels: list
    keys: dict[str, str | None]
    hints: Hints
    codes: list[str]  # plaintexts the server holds: they must never reach its log
    log: LogTail
    started: float
    calls: int = 0


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    server = Server(base / "data", base, "fuzz")
    started = time.monotonic()
    server.start()
    try:
        yield _prepare(server, started)
    finally:
        exit_code = server.stop()
        assert exit_code == 0, server.logs()[-3000:]


def _prepare(server: Server, started: float) -> Fuzzed:
    roles = [role for role in auth.ROLES if role != "admin"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        made = dict(zip(roles, pool.map(
            lambda role: server.create_key(role, BINDINGS.get(role, "")), roles), strict=True))
    revoked, revoked_id = server.create_key("admin")
    server.revoke_key(revoked_id)
    keys = {role: key for role, (key, _) in made.items()}
    keys.update({"admin": server.admin_key, "none": None, "revoked": revoked,
                 "wrong-secret": server.admin_key[:-1] + ("B" if server.admin_key.endswith("A")
                                                          else "A"),
                 "not-bearer": "Basic " + server.admin_key})
    admin, web = server.client(keys["admin"]), server.client(keys["storefront"])
    codes = stocked_sku(admin, SKU, 40, suppliers=("S-1",))
    stocked_sku(admin, OTHER_SKU, 2)
    paid = buy(web, SKU, 3).order
    held = web.orders.CreateOrder(order_request("fuzz-held", SKU, 2)).order
    partner_paid = buy(server.client(keys["partner"]), SKU, 1).order
    sold = [code.code for code in (*paid.codes, *partner_paid.codes)]
    to_import = new_codes(4, "FZ")
    hints = Hints({
        "sku_id": [SKU, OTHER_SKU, "fuzz-none"], "page_token": [SKU, ""],
        "order_id": [paid.order_id, held.order_id, partner_paid.order_id, "storefront:web/x"],
        "code_id": [code.code_id for code in (*paid.codes, *held.codes)] + [2**63 - 1],
        "code": [*sold, codes[-1], "FUZZ-NONE"], "codes": to_import + sold[:1],
        "request_id": ["fuzz-r1", "fuzz-r2"], "channel": ["web", "partner", "app"],
        "currency": ["CNY", "USD"], "supplier_id": ["S-1", "S-2"], "batch_id": ["fuzz-batch"],
        "idempotency_key": ["fuzz-held", "fuzz-new"], "account_id": ["alice"],
        "payment_reference": [pay_request(paid).payment_reference, "fuzz-pay"],
        "amount_micros": [paid.total.amount_micros, held.total.amount_micros],
        "quantity": [1, 2, 40], "page_size": [1, 100], "hold_seconds": [1, 900],
        "webhook_id": ["fuzz-hook"], "url": ["http://127.0.0.1:9/hooks"],
        "event_types": ["order.paid"]})
    log = LogTail(server)
    log.new_lines()  # start-up and set-up
    channels = [server.channel(fresh=True) for _ in range(workers)]
    return Fuzzed(server, channels, keys, hints, codes + to_import, log, started)


# -- keys ------------------------------------------------------------------------------------------

def _key_kinds(method: Method) -> st.SearchStrategy[str]:
    """Key kinds, weighted toward the roles that may call `method`."""
    allowed = [role for role in auth.ROLES if role in auth.METHOD_ROLES[method.name]]
    others = [role for role in auth.ROLES if role not in allowed]
    return st.sampled_from(allowed * 4 + others + list(NOT_KEYS))


MADE_UP_KEYS = st.one_of(
    st.from_regex(r"kc_[0-9a-f]{16}_[A-Za-z0-9_-]{0,43}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{0,60}", fullmatch=True))


# -- what every answer must be ---------------------------------------------------------------------

def names_a_field(descriptor, path: str) -> bool:
    """`path` (e.g. "sku.prices[2].channel") names a field of `descriptor`'s messages."""
    for part in path.split("."):
        if descriptor is None or not FIELD_PATH.fullmatch(part):
            return False
        field = descriptor.fields_by_name.get(part.partition("[")[0])
        if field is None or ("[" in part and not field.is_repeated):
            return False
        descriptor = field.message_type
    return True


def _decodes(method: Method, raw: bytes) -> bool:
    try:
        message_class_of(method.request).FromString(raw)
    except Exception:  # noqa: BLE001 - DecodeError, or whatever the implementation raises
        return False
    return True


def _allowed_codes(method: Method, key_kind: str, sent: list[bytes]) -> set[str]:
    oversized = any(len(raw) > MESSAGE_BYTES_MAX for raw in sent)
    if oversized and not method.client_streaming:
        return {"RESOURCE_EXHAUSTED"}  # gRPC refuses it before any handler runs
    if key_kind in NOT_KEYS:
        codes = {"UNAUTHENTICATED"}
    elif key_kind not in auth.METHOD_ROLES[method.name]:
        codes = {"PERMISSION_DENIED"}
    else:
        codes = {"OK", "INVALID_ARGUMENT", *SERVICER_REFUSALS.get((method.name, key_kind), ())}
        if method.server_streaming and not method.client_streaming:
            codes.add("CANCELLED")  # WatchEvents taken: the fuzzer ends it (fuzz_requests.call)
    return codes | ({"RESOURCE_EXHAUSTED"} if oversized else set())


def check(method: Method, key_kind: str, sent: list[bytes], outcome: Outcome) -> str | None:
    """Assert what a client may rely on; the kamicore_bad_requests_total reason, if any."""
    code = outcome.code.name
    allowed = _allowed_codes(method, key_kind, sent)
    assert code in allowed, (code, outcome.details, allowed)
    if code == "PERMISSION_DENIED" and key_kind in auth.METHOD_ROLES[method.name]:
        field, _, what = outcome.details.partition(": ")  # the servicer's: it names the field
        assert what and names_a_field(method.request, field), outcome.details
    if code == "INVALID_ARGUMENT":
        undecodable = outcome.details == method.not_a_request
        field, _, what = outcome.details.partition(": ")
        assert undecodable or (what and names_a_field(method.request, field)), outcome.details
        if undecodable:  # the server decodes exactly as the client does
            assert not all(_decodes(method, raw) for raw in sent), "it decodes here"
        elif not method.client_streaming:
            assert _decodes(method, sent[0]), outcome.details
        return "undecodable" if undecodable else "invalid_argument"
    if code == "OK":
        if not method.client_streaming:
            assert _decodes(method, sent[0]), "an undecodable request was answered OK"
        _check_replies(method, sent, outcome.replies)
    return REASON_OF_CODE.get(code)


def _check_replies(method: Method, sent: list[bytes], raw_replies: list[bytes]) -> None:
    """Every reply decodes, with a status the API defines; as many answers as questions."""
    requests = [message_class_of(method.request).FromString(raw) for raw in sent
                if _decodes(method, raw)]  # ImportCodes answers a bad chunk with a status
    replies = [method.response_class.FromString(raw) for raw in raw_replies]
    assert replies or method.server_streaming
    for reply in replies:
        status = reply.DESCRIPTOR.fields_by_name.get("status")
        if status is not None:  # never UNSPECIFIED
            assert reply.status in status.enum_type.values_by_number, reply.status
            assert reply.status != 0, reply
        for answers, asked in (("results", "items"), ("results", "codes")):
            if answers in reply.DESCRIPTOR.fields_by_name and \
                    asked in requests[0].DESCRIPTOR.fields_by_name:  # one result per item
                assert len(getattr(reply, answers)) == len(getattr(requests[0], asked))
    if method.server_streaming and method.client_streaming:  # RedeemStream: one answer per
        # request, in order (WatchEvents, taken, was cancelled before any event)
        assert [reply.request_id for reply in replies] == \
            [request.request_id for request in requests]
    if method.name == "/kamicore.v1.Inventory/ImportCodes":
        _check_import(sent, requests, replies[0])


def _check_import(sent: list[bytes], requests: list, reply) -> None:
    """Every code of the stream accounted for when it all went in; else where it stopped."""
    rows = sum(len(request.chunk.codes) for request in requests)
    assert reply.imported + reply.duplicates + reply.rejected == reply.rows_processed <= rows
    if reply.status == inventory_pb2.IMPORT_STATUS_OK:
        assert len(requests) == len(sent) and reply.rows_processed == rows, reply
    if reply.status == inventory_pb2.IMPORT_STATUS_INVALID_CHUNK:
        field, _, what = reply.invalid_chunk.partition(": ")
        assert reply.invalid_chunk.startswith("request: request is not a valid ") or (
            what and names_a_field(inventory_pb2.ImportCodesRequest.DESCRIPTOR, field)), reply


def cut_short(method: Method, outcome: Outcome) -> bool:
    """gRPC ended a stream for a message past the largest: the server may have refused an
    earlier message meanwhile (counted and logged), but the caller hears RESOURCE_EXHAUSTED."""
    return method.client_streaming and outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED


def check_log(method: Method, reason: str | None, lines: list[str], cut: bool) -> None:
    """What one call logged: nothing, or for a refusal one line (rate-limited) naming it."""
    text = "\n".join(lines)
    assert "Traceback" not in text and "internal error" not in text, text
    for line in lines:
        refused = REFUSED_LINE.search(line)
        if reason is None and not cut:
            assert refused is None, line
        else:
            assert refused is not None and refused[1] == method.name and \
                refused[3] in ((reason,) if not cut else REASONS), line
    assert (reason is None and not cut) or len(lines) <= 1, text


# -- refusals: counted, and logged at most once per interval -------------------------------------

def test_bad_requests_are_counted_and_their_log_lines_rate_limited(fuzzed):
    """40 calls of each kind of refusal: each counted, at most one line per worker and kind.
    First in this file: nothing before logged a refusal of GetOrder."""
    method = "/kamicore.v1.Orders/GetOrder"
    code = fuzzed.codes[0]
    storefront_id = fuzzed.keys["storefront"].split("_")[1]
    sent = {  # reason -> (key, request bytes); the bytes carry a code, never logged
        "undecodable": (fuzzed.keys["storefront"], b"\x0f" + code.encode()),
        "invalid_argument": (fuzzed.keys["storefront"], orders_pb2.GetOrderRequest(
            order_id=code + "\x00").SerializeToString()),
        "unauthenticated": (None, orders_pb2.GetOrderRequest(order_id=code).SerializeToString()),
        "permission_denied": (fuzzed.keys["pos"], b"\x0f" + code.encode()),
    }
    before = counters(fuzzed.server, method)
    for reason, (key, raw) in sent.items():
        for index in range(40):
            channel = fuzzed.channels[index % len(fuzzed.channels)]
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(method)(raw, metadata=metadata(key), timeout=30)
            assert REASON_OF_CODE[refused.value.code().name] == reason.replace(
                "undecodable", "invalid_argument")
    new = _refused_lines("\n".join(fuzzed.log.new_lines()))
    after = counters(fuzzed.server, method)
    assert {reason: after[reason] - before[reason] for reason in REASONS} == \
        dict.fromkeys(REASONS, 40.0)
    assert set(new) == {(method, reason) for reason in REASONS}, new
    for reason in REASONS:
        assert 1 <= len(new[method, reason]) <= workers, new[method, reason]
    assert all(f"from storefront key {storefront_id}: invalid_argument (order_id: contains a "
               "control character)" in line for line in new[method, "invalid_argument"])
    assert all(f"from storefront key {storefront_id}: undecodable (request: request is not a "
               "valid kamicore.v1.GetOrderRequest)" in line for line in new[method, "undecodable"])
    assert all("from pos key " in line and "may not call /kamicore.v1.Orders/GetOrder" in line
               for line in new[method, "permission_denied"])
    assert all("from a caller without a valid key: unauthenticated" in line
               for line in new[method, "unauthenticated"])
    assert_no_plaintext(fuzzed.server.logs(), [code], "the log of refused requests")


def _refused_lines(logs: str) -> dict[tuple[str, str], list[str]]:
    lines = collections.defaultdict(list)
    for line in logs.splitlines():
        refused = REFUSED_LINE.search(line)
        if refused is not None:
            lines[refused[1], refused[3]].append(line)
    return lines


def _lines_max(fuzzed: Fuzzed) -> int:
    """At most one line per (method, reason) per interval in each worker since the start."""
    elapsed = time.monotonic() - fuzzed.started
    return workers * (1 + int(elapsed // limits.bad_request_log_interval_seconds))


# -- the fuzzer ------------------------------------------------------------------------------------

def counters(server: Server, method: str) -> collections.Counter:
    """kamicore_bad_requests_total by reason, and kamicore_rpcs_total{code="OK"} as "OK"."""
    samples = metric_samples(server.metrics())
    found = collections.Counter({reason: metric_value(
        samples, "kamicore_bad_requests_total", method=method, reason=reason)
        for reason in REASONS})
    found["OK"] = metric_value(samples, "kamicore_rpcs_total", method=method, code="OK")
    return found


def fuzz(fuzzed: Fuzzed, method: Method, examples: int, derandomize: bool) -> None:
    before = counters(fuzzed.server, method.name)
    counted: collections.Counter = collections.Counter()  # as the client saw the answers

    @settings(max_examples=examples, derandomize=derandomize, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.large_base_example])
    @given(key_kind=_key_kinds(method), made_up_key=MADE_UP_KEYS,
           sent=requests_for(method, fuzzed.hints))
    def one_call(key_kind, made_up_key, sent):
        fuzzed.calls += 1
        channel = fuzzed.channels[fuzzed.calls % len(fuzzed.channels)]
        key = made_up_key if key_kind == "made-up" else fuzzed.keys[key_kind]
        outcome = call(channel, method, sent, key)
        reason = check(method, key_kind, sent, outcome)
        cut = cut_short(method, outcome)
        check_log(method, reason, fuzzed.log.new_lines(), cut)
        counted[reason or ("cut short" if cut else outcome.code.name)] += 1

    one_call()
    found = counters(fuzzed.server, method.name)
    found.subtract(before)
    # gRPC ends the requests of a stream it cut short as if the client had closed them and
    # cancels the call a little later: meanwhile the server may refuse it, or even answer OK
    for outcome in (*REASONS, "OK"):
        assert counted[outcome] <= found[outcome], (outcome, found, counted)
    assert sum(found[outcome] - counted[outcome] for outcome in (*REASONS, "OK")) <= \
        counted["cut short"], (found, counted)


@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.name.rsplit(".", 1)[1])
def test_every_rpc_answers_hostile_input_with_a_documented_status(fuzzed, method):
    fuzz(fuzzed, method, fast_examples, derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=lambda method: method.name.rsplit(".", 1)[1])
def test_soak_every_rpc_answers_hostile_input_with_a_documented_status(fuzzed, method):
    fuzz(fuzzed, method, soak_examples, derandomize=False)


def test_the_fuzzer_reaches_every_rpc_of_every_service():
    assert {method.name for method in METHODS} == set(auth.METHOD_ROLES)
    assert len(METHODS) == 44  # 25 before Suppliers (with SupplierCallback), 30 before
    # Events/WatchEvents (1), Webhooks (4) and Reports (9)


def test_after_fuzzing_the_log_is_clean_and_small(fuzzed):
    logs = fuzzed.server.logs()
    assert "Traceback" not in logs and "internal error" not in logs, logs[-3000:]
    assert_no_plaintext(logs, fuzzed.codes, "the fuzzed server's log")
    for (method, reason), lines in _refused_lines(logs).items():
        assert method in auth.METHOD_ROLES and reason in REASONS, lines[0]
        assert len(lines) <= _lines_max(fuzzed), lines
