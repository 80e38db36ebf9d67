"""The behaviour of the simulated supplier, apart from its wires (simulator.py serves it).

A supplier as kamicore meets them: idempotent per request id (a retry tops up once and answers
as the first time), with configurable latency, definite failures, timeouts that DO top up (the
classic unknown outcome), requests dropped before they arrive (NOT_FOUND when queried), PENDING
answers resolved later with a callback, duplicate callbacks and badly signed answers or
callbacks. Codes bought through PurchaseCodes are fresh random strings held in memory only:
the inspection state shows their SHA-256, never the codes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import secrets
import time
from dataclasses import dataclass, field

import aiohttp

from kamicore import limits
from kamicore.connectors.base import Result
from kamicore.connectors.signing import Callback, now_ms, signed_headers

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
callback_timeout_seconds = 5.0


@dataclass
class Behaviour:
    """What the supplier does; every field a `--flag` of the simulator and a key of
    POST /control/config. Rates are probabilities per new request id."""

    latency_ms: int = 0  # before every answer
    failure_rate: float = 0.0  # FAILED: nothing topped up (or bought)
    timeout_rate: float = 0.0  # done, but answered only after the caller's deadline
    drop_rate: float = 0.0  # lost on the way: never recorded, no answer (query: NOT_FOUND)
    pending_rate: float = 0.0  # PENDING, then resolved after late_callback_ms
    late_callback_ms: int = 100  # when a PENDING request is resolved and called back
    duplicate_callbacks: int = 0  # extra copies of every callback
    callback_on_final: bool = False  # also call back requests answered at once
    bad_signature_rate: float = 0.0  # answers signed with a wrong key
    bad_callback_signature_rate: float = 0.0  # callbacks signed with a wrong key
    hang_ms: int = 30_000  # how long a timed-out or dropped call holds its answer (HTTP)
    unit_cost_micros: int = 1_000_000  # of each purchased code
    currency: str = "CNY"
    code_valid_days: int = 365
    products: list[str] = field(default_factory=list)  # served products; empty: any
    seed: int | None = None

    def updated(self, changes: dict) -> Behaviour:
        """A copy with `changes`; ValueError naming the first bad field."""
        known = {item.name: item for item in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"{name}: no such setting")
            values[name] = value
        result = Behaviour(**values)
        result.check()
        return result

    def check(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name.endswith("_rate"):
                if isinstance(value, bool) or not isinstance(value, int | float) \
                        or not 0 <= value <= 1:
                    raise ValueError(f"{item.name}: not a probability in [0, 1]")
            elif item.name in ("callback_on_final",):
                if not isinstance(value, bool):
                    raise ValueError(f"{item.name}: not true or false")
            elif item.name == "products":
                if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                    raise ValueError(f"{item.name}: not a list of strings")
            elif item.name == "currency":
                if not isinstance(value, str) or len(value) != 3:
                    raise ValueError(f"{item.name}: not a 3-letter code")
            elif item.name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"{item.name}: not an integer")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{item.name}: not a non-negative integer")


@dataclass
class TopUp:
    request: dict  # the request's fields (as sent), to spot a reused request id
    final: Result  # SUCCEEDED or FAILED, decided on arrival
    answered: Result  # what the first answer said
    reference: str
    resolved: bool = False  # the final result holds (topped up when SUCCEEDED)
    topups: int = 0  # top-ups really performed (never more than 1)
    received: int = 1  # how often the request id arrived


@dataclass
class Bought:
    request: dict
    result: Result
    codes: tuple[str, ...] = ()
    batch_id: str = ""
    valid_until_ms: int = 0
    ready_at: float = 0.0  # monotonic: a PENDING purchase answers SUCCEEDED from then on
    received: int = 1


class Answer(Exception):
    """A call refused as a whole (HTTP status / gRPC status name, message)."""

    def __init__(self, http_status: int, grpc_code: str, message: str):
        super().__init__(message)
        self.http_status, self.grpc_code = http_status, grpc_code


class Hang(Exception):
    """No answer in time: the wire holds the call for `seconds`, then answers `then` (or fails
    it when None)."""

    def __init__(self, seconds: float, then: dict | None):
        super().__init__("hang")
        self.seconds, self.then = seconds, then


class SimulatedSupplier:
    def __init__(self, secret: bytes, behaviour: Behaviour):
        self.secret = secret
        self.initial = behaviour
        self._tasks: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None
        self.reset()

    def reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.behaviour = self.initial
        self.random = random.Random(self.behaviour.seed)
        self.topups: dict[str, TopUp] = {}
        self.purchases: dict[str, Bought] = {}
        self.callbacks_sent: list[dict] = []
        self.dropped: list[str] = []
        self.calls = {"TopUp": 0, "QueryTopUp": 0, "PurchaseCodes": 0}
        self.refused_calls = 0

    def configure(self, changes: dict) -> None:
        self.behaviour = self.behaviour.updated(changes)
        if "seed" in changes:
            self.random = random.Random(self.behaviour.seed)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.random.random() < rate

    # -- signing ---------------------------------------------------------------------------------
    def answer_headers(self, body: bytes) -> dict[str, str]:
        """The signature headers of an answer (a wrong one at bad_signature_rate)."""
        if self._chance(self.behaviour.bad_signature_rate):
            return signed_headers(self.secret + b"-wrong", body)
        return signed_headers(self.secret, body)

    # -- the calls -------------------------------------------------------------------------------
    # Each is decided and recorded the moment it arrives, with no wait in between (so two
    # copies of one request id never both top up); the latency comes after, before the answer,
    # so a caller that dies or gives up meanwhile leaves the work done, as with a real supplier.
    async def top_up(self, request: dict) -> dict:
        self.calls["TopUp"] += 1
        try:
            return self._top_up(request)
        finally:
            await self._latency()

    def _arrived(self, records: dict, request: dict, answer) -> dict | None:
        """A request id seen before -> the first answer again (409 when its parameters differ);
        a new one -> None, unless it is lost on the way (drop_rate: it hangs, unrecorded)."""
        request_id = request.get("request_id", "")
        known = records.get(request_id)
        if known is not None:
            if known.request != request:
                raise Answer(409, "ALREADY_EXISTS", "request_id: reused with other parameters")
            known.received += 1
            return answer(request_id, known)
        if not request_id:
            raise Answer(400, "INVALID_ARGUMENT", "request_id: missing")
        if self._chance(self.behaviour.drop_rate):
            self.dropped.append(request_id)
            raise Hang(self.behaviour.hang_ms / 1000, None)
        return None

    def _top_up(self, request: dict) -> dict:
        again = self._arrived(self.topups, request, self._top_up_answer)
        if again is not None:
            return again
        request_id, behaviour = request["request_id"], self.behaviour
        final = Result.FAILED if (self._chance(behaviour.failure_rate)
                                  or not self._serves(request.get("product"))) \
            else Result.SUCCEEDED
        timeout = self._chance(behaviour.timeout_rate)
        pending = not timeout and self._chance(behaviour.pending_rate)
        record = self.topups[request_id] = TopUp(
            request=request, final=final, answered=Result.PENDING if pending else final,
            reference="sim-" + secrets.token_hex(8))
        url = request.get("callback_url") or ""
        if pending:
            self._spawn(self._resolve_later(request_id, url))
        else:
            self._resolve(record)
            if behaviour.callback_on_final and url:
                self._spawn(self._call_back(request_id, url))
        answer = self._top_up_answer(request_id, record)
        if timeout:
            raise Hang(behaviour.hang_ms / 1000, answer)
        return answer

    async def query(self, request: dict) -> dict:
        self.calls["QueryTopUp"] += 1
        try:
            return self._query(request)
        finally:
            await self._latency()

    def _query(self, request: dict) -> dict:
        request_id = request.get("request_id", "")
        record = self.topups.get(request_id)
        if record is None:
            return {"request_id": request_id, "result": Result.NOT_FOUND.value,
                    "supplier_reference": "", "message": "no such request id"}
        return self._top_up_answer(request_id, record)

    async def purchase(self, request: dict) -> dict:
        self.calls["PurchaseCodes"] += 1
        try:
            return self._purchase(request)
        finally:
            await self._latency()

    def _purchase(self, request: dict) -> dict:
        again = self._arrived(self.purchases, request, self._purchase_answer)
        if again is not None:
            return again
        request_id, behaviour = request["request_id"], self.behaviour
        quantity = request.get("quantity")
        if not isinstance(quantity, int) or not \
                1 <= quantity <= limits.supplier_codes_per_purchase_max:
            record = Bought(request, Result.FAILED)
        elif self._chance(behaviour.failure_rate) or not self._serves(request.get("product")):
            record = Bought(request, Result.FAILED)
        else:
            record = Bought(
                request, Result.SUCCEEDED,
                codes=tuple(_fresh_code() for _ in range(quantity)),
                batch_id="sim-" + secrets.token_hex(6),
                valid_until_ms=now_ms() + behaviour.code_valid_days * 86_400_000)
        timeout = self._chance(behaviour.timeout_rate)
        if not timeout and self._chance(behaviour.pending_rate):
            record.ready_at = time.monotonic() + behaviour.late_callback_ms / 1000
        self.purchases[request_id] = record
        answer = self._purchase_answer(request_id, record)
        if timeout:
            raise Hang(behaviour.hang_ms / 1000, answer)
        return answer

    # -- inside ----------------------------------------------------------------------------------
    def _serves(self, product) -> bool:
        return not self.behaviour.products or product in self.behaviour.products

    async def _latency(self) -> None:
        if self.behaviour.latency_ms:
            await asyncio.sleep(self.behaviour.latency_ms / 1000)

    def _top_up_answer(self, request_id: str, record: TopUp) -> dict:
        result = record.final if record.resolved else Result.PENDING
        return {"request_id": request_id, "result": result.value,
                "supplier_reference": record.reference,
                "message": "" if result is Result.SUCCEEDED else {
                    Result.FAILED: "declined by the simulated supplier",
                    Result.PENDING: "in progress"}[result]}

    def _purchase_answer(self, request_id: str, record: Bought) -> dict:
        answer = {"request_id": request_id, "result": record.result.value, "codes": [],
                  "batch_id": "", "unit_cost_micros": 0, "currency": "", "valid_until_ms": 0,
                  "message": ""}
        if record.result is Result.FAILED:
            answer["message"] = "declined by the simulated supplier"
        elif time.monotonic() < record.ready_at:
            answer.update(result=Result.PENDING.value, message="in progress")
        else:
            answer.update(codes=list(record.codes), batch_id=record.batch_id,
                          unit_cost_micros=self.behaviour.unit_cost_micros,
                          currency=self.behaviour.currency,
                          valid_until_ms=record.valid_until_ms)
        return answer

    def _resolve(self, record: TopUp) -> None:
        record.resolved = True
        if record.final is Result.SUCCEEDED:
            record.topups += 1

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_later(self, request_id: str, url: str) -> None:
        await asyncio.sleep(self.behaviour.late_callback_ms / 1000)
        record = self.topups.get(request_id)
        if record is None:
            return
        self._resolve(record)
        if url:
            await self._call_back(request_id, url)

    async def _call_back(self, request_id: str, url: str) -> None:
        record = self.topups[request_id]
        body = Callback(request_id, record.final, record.reference,
                        self._top_up_answer(request_id, record)["message"]).document()
        for _ in range(1 + self.behaviour.duplicate_callbacks):
            bad = self._chance(self.behaviour.bad_callback_signature_rate)
            headers = {"content-type": "application/json",
                       **signed_headers(self.secret + (b"-wrong" if bad else b""), body)}
            sent = {"request_id": request_id, "result": record.final.value, "url": url,
                    "bad_signature": bad, "http_status": 0, "answer": "", "error": ""}
            try:
                if self._session is None:
                    self._session = aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=callback_timeout_seconds))
                async with self._session.post(url, data=body, headers=headers) as response:
                    sent["http_status"] = response.status
                    sent["answer"] = (await response.text())[:200]
            except (TimeoutError, aiohttp.ClientError, ValueError) as error:
                sent["error"] = f"{type(error).__name__}: {error}"[:200]
            self.callbacks_sent.append(sent)

    def state(self) -> dict:
        """What a test inspects: top-ups performed per request id and everything it was sent.
        Purchased codes appear as SHA-256 hex only."""
        return {
            "config": dataclasses.asdict(self.behaviour),
            "topups": {request_id: record.topups for request_id, record in self.topups.items()},
            "requests": {request_id: {
                "final": record.final.value, "answered": record.answered.value,
                "resolved": record.resolved, "received": record.received,
                "supplier_reference": record.reference, **record.request}
                for request_id, record in self.topups.items()},
            "purchases": {request_id: {
                "result": record.result.value, "batch_id": record.batch_id,
                "received": record.received, "product": record.request.get("product"),
                "quantity": record.request.get("quantity"),
                "codes_sha256": [hashlib.sha256(code.encode()).hexdigest()
                                 for code in record.codes]}
                for request_id, record in self.purchases.items()},
            "callbacks_sent": list(self.callbacks_sent),
            "dropped": list(self.dropped),
            "calls": dict(self.calls),
            "refused_calls": self.refused_calls,
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()


def _fresh_code() -> str:
    groups = ("".join(secrets.choice(CODE_ALPHABET) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


def dumps(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
