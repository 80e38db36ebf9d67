"""The gate every kamicore call passes: authentication and roles before the request is even
decoded, the in-flight limit, decoding (an undecodable message is INVALID_ARGUMENT), bad input
as INVALID_ARGUMENT naming the field, and metrics.

It is not an interceptor: at start, every method of every kamicore service gets its own
handler, built once with its roles, request type and servicer method resolved, and registered
with raw bytes in (no deserializer), so that nothing is decoded for a caller who may not call
the method and no per-call work repeats what start-up could do.
"""

from __future__ import annotations

import contextvars
import logging
import time

import grpc
from google.protobuf.message import DecodeError

from .. import auth, limits, metrics
from ..config import Config
from ..engine import Engine, InvalidArgument

log = logging.getLogger("kamicore")

_principal: contextvars.ContextVar[auth.Principal] = contextvars.ContextVar("principal")
BEARER = "Bearer "
UNAUTHENTICATED_MESSAGE = "a valid API key is required: authorization: Bearer <key>"


def principal() -> auth.Principal:
    return _principal.get()


def actor() -> str:
    """Who the audit log names for this call's changes."""
    caller = principal()
    return f"{caller.role}:{caller.binding or caller.key_id}"[:limits.actor_bytes_max]


class Gate:
    """Authentication, roles, the in-flight limit and metrics for every kamicore call."""

    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.authenticate = auth.Authenticator(engine)
        self.in_flight_max = config.in_flight_rpcs_max
        self.in_flight = 0
        self.metrics = worker_metrics

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
            raise InvalidArgument("request", self.not_a_request) from None

    async def decoded(self, raw_requests):
        async for raw in raw_requests:
            yield self.decode(raw)

    def request(self, raw):
        return self.decoded(raw) if self.client_streaming else self.decode(raw)

    async def unary(self, raw, context):
        async with _Admitted(self, context):
            return await self.behavior(self.request(raw), context)

    async def streaming(self, raw, context):
        async with _Admitted(self, context):
            async for response in self.behavior(self.request(raw), context):
                yield response


class _Admitted:
    """One call: authenticated and allowed (or refused before anything is decoded), counted
    toward the in-flight limit, run as its caller, bad input as INVALID_ARGUMENT naming the
    field and a bug as INTERNAL, and measured."""

    __slots__ = ("method", "context", "code", "started")

    def __init__(self, method: _Method, context):
        self.method = method
        self.context = context
        self.code: str | None = None

    async def __aenter__(self):
        method, gate = self.method, self.method.gate
        caller = gate.caller(self.context)
        if caller is None:
            await self._refuse(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        if caller.role not in method.roles:
            await self._refuse(grpc.StatusCode.PERMISSION_DENIED,
                               f"a {caller.role} key may not call {method.name}")
        if gate.in_flight >= gate.in_flight_max:
            await self._refuse(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"more than {gate.in_flight_max} calls in flight; retry")
        gate.in_flight += 1
        _principal.set(caller)
        self.started = time.perf_counter()
        return self

    async def _refuse(self, code: grpc.StatusCode, message: str):
        self.method.gate.metrics.rpc(self.method.name, code.name)
        await self.context.abort(code, message)

    async def __aexit__(self, kind, error, traceback):
        gate, name = self.method.gate, self.method.name
        try:
            if isinstance(error, InvalidArgument):
                self.code = "INVALID_ARGUMENT"
                await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                self.code = "INTERNAL"
                log.exception("%s failed", name, exc_info=error)
                await self.context.abort(grpc.StatusCode.INTERNAL,
                                         "internal error; see server log")
        finally:
            gate.in_flight -= 1
            gate.metrics.rpc(name, self.code or _code_name(self.context),
                             time.perf_counter() - self.started)
        return False


def _code_name(context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"
