"""The gate every kamicore call passes: authentication and roles before the request is even
decoded, fair use of the worker (calls in flight, per key as well, open streams per key, idle
streams ended), decoding (an undecodable message is INVALID_ARGUMENT), bad input as
INVALID_ARGUMENT naming the field, and metrics; refusals are counted and their log lines
rate-limited (kamicore.grpc.refusals).

It is not an interceptor: at start, every method of every kamicore service gets its own
handler, built once with its roles, request type and servicer method resolved, and registered
with raw bytes in (no deserializer), so that nothing is decoded for a caller who may not call
the method and no per-call work repeats what start-up could do.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time

import grpc
from google.protobuf.message import DecodeError

from .. import auth, limits, metrics
from ..config import Config
from ..engine import Engine, InvalidArgument
from . import refusals

_principal: contextvars.ContextVar[auth.Principal] = contextvars.ContextVar("principal")
BEARER = "Bearer "
UNAUTHENTICATED_MESSAGE = "a valid API key is required: authorization: Bearer <key>"
# gRPC's own retry hint (gRFC A6): a client whose retry policy admits the code waits this long
PUSHBACK = "grpc-retry-pushback-ms"
BUSY_PUSHBACK = ((PUSHBACK, str(limits.busy_retry_after_ms)),)
STREAMS_PUSHBACK = ((PUSHBACK, str(limits.streams_retry_after_ms)),)
_CANCELLED = asyncio.CancelledError


class Undecodable(InvalidArgument):
    """The request's bytes are not a message of its type."""


class PermissionDenied(Exception):
    """What a servicer raises for a request its caller's role may make, but not with these
    values (a supplier importing into another's SKU): PERMISSION_DENIED naming the field,
    counted and logged by the gate like its own refusals (before the caller hears it)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")


def principal() -> auth.Principal:
    return _principal.get()


def actor() -> str:
    """Who the audit log names for this call's changes."""
    caller = principal()
    return f"{caller.role}:{caller.binding or caller.key_id}"[:limits.actor_bytes_max]


class Gate:
    """Authentication, roles, fair use and metrics for every kamicore call.

    Fair use, per worker: at most in_flight_rpcs_max calls in flight, and at most a share of
    them (key_in_flight_rpcs_max) for any one key, so that one busy or hostile key leaves room
    for the others; at most key_streams_max open streams per key; and a stream whose client has
    sent nothing for stream_idle_seconds is ended, freeing its slot. Every refusal is counted
    in kamicore_rpcs_total and kamicore_rpcs_limited_total."""

    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.authenticate = auth.Authenticator(engine)
        self.in_flight_max = config.in_flight_rpcs_max
        self.key_in_flight_max = config.key_in_flight_limit()
        self.key_streams_max = config.key_streams_max
        self.stream_idle_seconds = config.stream_idle_seconds
        self.in_flight = 0
        # by key id; an entry stays at 0 when its calls end (one per valid key, so bounded)
        self.in_flight_by_key: dict[str, int] = {}
        self.streams_by_key: dict[str, int] = {}
        self.streams: set[_Admitted] = set()  # open streams whose client may still send
        self.idle_watch: asyncio.Task | None = None
        self.metrics = worker_metrics
        self.refusals = refusals.Refusals(worker_metrics)

    def service(self, service_descriptor, servicer, message_classes) -> grpc.GenericRpcHandler:
        """The handlers of one proto service, served by `servicer`'s methods; message_classes
        maps a message's full name to its generated class."""
        handlers = {}
        for method in service_descriptor.methods:
            name = f"/{service_descriptor.full_name}/{method.name}"
            handlers[method.name] = _Method(
                self, name, frozenset(auth.METHOD_ROLES.get(name, ())),
                message_classes[method.input_type.full_name],
                message_classes[method.output_type.full_name],
                getattr(servicer, method.name), method.client_streaming,
                method.server_streaming).handler()
        return grpc.method_handlers_generic_handler(service_descriptor.full_name, handlers)

    def caller(self, context) -> auth.Principal | None:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                if value.startswith(BEARER):
                    return self.authenticate(value[len(BEARER):].strip())
                return None
        return None

    def watch_idle(self, stream: _Admitted) -> None:
        self.streams.add(stream)
        if self.idle_watch is None:
            self.idle_watch = asyncio.ensure_future(self._end_idle_streams())

    async def _end_idle_streams(self) -> None:
        """Every fraction of the idle timeout: end the streams that received nothing since
        the timeout began. One task per worker, while any stream is open: no per-message
        timer, only a counter per message."""
        loop = asyncio.get_running_loop()
        interval = self.stream_idle_seconds / limits.idle_checks_per_timeout
        try:
            while self.streams:
                await asyncio.sleep(interval)
                now = loop.time()
                for stream in tuple(self.streams):
                    stream.end_if_idle(now, self.stream_idle_seconds)
        finally:
            self.idle_watch = None


class _Method:
    """One RPC: who may call it, how its request decodes, what serves it."""

    def __init__(self, gate: Gate, name: str, roles: frozenset, request_class, response_class,
                 behavior, client_streaming: bool, server_streaming: bool):
        self.gate = gate
        self.name = name
        self.roles = roles
        self.request_class = request_class
        self.response_class = response_class
        self.behavior = behavior
        self.client_streaming = client_streaming
        self.server_streaming = server_streaming
        self.not_a_request = (f"request is not a valid "
                              f"{request_class.DESCRIPTOR.full_name}")
        self.stream = client_streaming or server_streaming  # counts toward key_streams_max

    def handler(self) -> grpc.RpcMethodHandler:
        options = {"request_deserializer": None,  # raw bytes: decoded after authentication
                   "response_serializer": self.response_class.SerializeToString}
        if self.server_streaming:
            factory = (grpc.stream_stream_rpc_method_handler if self.client_streaming
                       else grpc.unary_stream_rpc_method_handler)
            return factory(self.streaming, **options)
        factory = (grpc.stream_unary_rpc_method_handler if self.client_streaming
                   else grpc.unary_unary_rpc_method_handler)
        return factory(self.unary, **options)

    def decode(self, raw: bytes):
        try:
            return self.request_class.FromString(raw)
        except DecodeError:
            raise Undecodable("request", self.not_a_request) from None

    async def decoded(self, raw_requests):
        async for raw in raw_requests:
            yield self.decode(raw)

    def request(self, raw):
        return self.decoded(raw) if self.client_streaming else self.decode(raw)

    async def unary(self, raw, context):
        async with _Admitted(self, context, raw) as raw:
            return await self.behavior(self.request(raw), context)

    async def streaming(self, raw, context):
        """Responses are written here, not yielded to grpc, so that ending an idle stream
        (which cancels this task) always lands in this frame and gets its status."""
        async with _Admitted(self, context, raw) as raw:
            replies = self.behavior(self.request(raw), context)
            if inspect.isawaitable(replies):  # it writes its own replies (WatchEvents: each
                await replies  # write with a deadline)
                return
            async for response in replies:
                await context.write(response)


# the refusals of the gate that kamicore_bad_requests_total counts, by the code the caller hears
_REFUSAL_REASONS = {grpc.StatusCode.UNAUTHENTICATED: refusals.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED: refusals.PERMISSION_DENIED}


class _Admitted:
    """One call: authenticated and allowed (or refused before anything is decoded), within
    the worker's and its key's fair use, run as its caller, bad input as INVALID_ARGUMENT naming
    the field and a bug as INTERNAL, and measured. Entering gives the request (for a client
    stream: its messages, counted for the idle timeout)."""

    __slots__ = ("method", "context", "raw", "code", "started", "key", "idle", "task",
                 "messages", "messages_seen", "quiet_since", "caller")

    def __init__(self, method: _Method, context, raw):
        self.method = method
        self.context = context
        self.raw = raw
        self.code: str | None = None
        self.idle = False
        self.caller: auth.Principal | None = None

    async def __aenter__(self):
        method, gate = self.method, self.method.gate
        self.caller = caller = gate.caller(self.context)
        if caller is None:
            await self._refuse(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        if caller.role not in method.roles:
            await self._refuse(grpc.StatusCode.PERMISSION_DENIED,
                               f"a {caller.role} key may not call {method.name}")
        key = caller.key_id
        held = gate.in_flight_by_key.get(key, 0)
        if held >= gate.key_in_flight_max:
            await self._refuse_over(
                "key_in_flight_rpcs_max", f"this key already has {held} calls in flight on "
                "this worker, the most one key may have (key_in_flight_rpcs_max); retry "
                "shortly", BUSY_PUSHBACK)
        if gate.in_flight >= gate.in_flight_max:
            await self._refuse_over(
                "in_flight_rpcs_max", f"more than {gate.in_flight_max} calls in flight on this "
                "worker (in_flight_rpcs_max); retry shortly", BUSY_PUSHBACK)
        if method.stream:
            streams = gate.streams_by_key.get(key, 0)
            if streams >= gate.key_streams_max:
                await self._refuse_over(
                    "key_streams_max", f"this key already has {streams} streams open on this "
                    "worker, the most one key may have (key_streams_max); send on an open "
                    "stream, or close one and retry", STREAMS_PUSHBACK)
            gate.streams_by_key[key] = streams + 1
            if method.client_streaming:
                self._watch(gate)
        gate.in_flight_by_key[key] = held + 1
        gate.in_flight += 1
        self.key = key
        _principal.set(caller)
        self.started = time.perf_counter()
        return self.raw

    def _watch(self, gate: Gate) -> None:
        """Count the client's messages, for the idle timeout."""
        self.task = asyncio.current_task()
        self.messages = self.messages_seen = 0
        self.quiet_since = asyncio.get_running_loop().time()
        self.raw = self._counted(self.raw)
        gate.watch_idle(self)

    async def _counted(self, raw_requests):
        # headers at once, so a client can know its stream was admitted before it writes:
        # a write racing a refusal fails on the client as INTERNAL, hiding RESOURCE_EXHAUSTED
        await self.context.send_initial_metadata(())
        async for raw in raw_requests:
            self.messages += 1
            yield raw
        self.method.gate.streams.discard(self)  # the client is done sending: never idle

    def end_if_idle(self, now: float, idle_seconds: float) -> None:
        if self.messages != self.messages_seen:
            self.messages_seen = self.messages
            self.quiet_since = now
        elif now - self.quiet_since >= idle_seconds:
            self.method.gate.streams.discard(self)
            self.idle = True
            self.task.cancel()  # lands in the servicer's await; __aexit__ answers

    async def _refuse(self, code: grpc.StatusCode, message: str):
        self.method.gate.metrics.rpc(self.method.name, code.name)
        if code in _REFUSAL_REASONS:
            self._report(_REFUSAL_REASONS[code], message)
        await self.context.abort(code, message)

    def _report(self, reason: str, message: str) -> None:
        self.method.gate.refusals.refused(self.method.name, reason, self.caller, message)

    async def _refuse_over(self, limit: str, message: str, pushback: tuple):
        gate, name = self.method.gate, self.method.name
        gate.metrics.rpc(name, "RESOURCE_EXHAUSTED")
        gate.metrics.limit(name, limit)
        await self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message,
                                 trailing_metadata=pushback)

    async def __aexit__(self, kind, error, traceback):
        gate, name = self.method.gate, self.method.name
        if self.method.stream:
            gate.streams.discard(self)  # no longer watched, before anything here awaits
        try:
            if kind is _CANCELLED:
                self.code = "UNAVAILABLE" if self.idle else "CANCELLED"
                if self.idle:
                    await self._end_idle()
            if isinstance(error, InvalidArgument):
                self.code = "INVALID_ARGUMENT"
                self._report(refusals.UNDECODABLE if isinstance(error, Undecodable)
                             else refusals.INVALID_ARGUMENT, str(error))
                await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            if isinstance(error, PermissionDenied):
                self.code = "PERMISSION_DENIED"
                self._report(refusals.PERMISSION_DENIED, str(error))
                await self.context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                self.code = "INTERNAL"
                gate.refusals.failed(name, error)
                await self.context.abort(grpc.StatusCode.INTERNAL,
                                         "internal error; see server log")
        finally:
            gate.in_flight -= 1
            gate.in_flight_by_key[self.key] -= 1
            if self.method.stream:
                gate.streams_by_key[self.key] -= 1
            gate.metrics.rpc(name, self.code or _code_name(self.context),
                             time.perf_counter() - self.started)
        return False

    async def _end_idle(self):
        """UNAVAILABLE, the code gRPC itself gives when it closes an idle connection: the
        stream is gone and the client should open a new one, when it has work, and resend
        what was not answered (Redeem and ImportCodes are idempotent)."""
        asyncio.current_task().uncancel()
        self.method.gate.metrics.limit(self.method.name, "stream_idle_seconds")
        await self.context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"no message on this stream for {self.method.gate.stream_idle_seconds:g} s: it "
            "was ended to free its slot; open a new stream when there is work")


def _code_name(context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"
