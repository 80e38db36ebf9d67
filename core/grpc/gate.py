"""The interceptor every kamicore call passes: authentication, roles, the in-flight limit,
bad input as INVALID_ARGUMENT naming the field, and metrics."""

from __future__ import annotations

import contextvars
import logging
import time

import grpc

from .. import auth, limits, metrics
from ..config import Config
from ..engine import Engine, InvalidArgument

log = logging.getLogger("kamicore")

_principal: contextvars.ContextVar[auth.Principal] = contextvars.ContextVar("principal")


def principal() -> auth.Principal:
    return _principal.get()


class Gate(grpc.aio.ServerInterceptor):
    """Authentication, roles, the in-flight limit and metrics for every kamicore call."""

    def __init__(self, engine: Engine, config: Config, worker_metrics: metrics.WorkerMetrics):
        self.authenticate = auth.Authenticator(engine)
        self.in_flight_max = config.in_flight_rpcs_max
        self.in_flight = 0
        self.metrics = worker_metrics

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(auth.PUBLIC_PREFIXES):
            return handler
        metadata = dict(details.invocation_metadata or ())
        header = metadata.get("authorization", "")
        caller = None
        if header.startswith("Bearer "):
            caller = self.authenticate(header[len("Bearer "):].strip())
        if caller is None:
            return self._refusal(handler, method, grpc.StatusCode.UNAUTHENTICATED,
                                 "a valid API key is required: authorization: Bearer <key>")
        if caller.role not in auth.METHOD_ROLES.get(method, ()):
            return self._refusal(handler, method, grpc.StatusCode.PERMISSION_DENIED,
                                 f"a {caller.role} key may not call {method}")
        return self._wrap(handler, method, caller)

    def _refusal(self, handler, method: str, code: grpc.StatusCode, message: str):
        async def refuse(request_or_iterator, context):
            self.metrics.rpc(method, code.name)
            await context.abort(code, message)
        return _same_kind(handler, refuse, refuse)

    def _wrap(self, handler, method: str, caller: auth.Principal):
        gate = self

        async def unary(request_or_iterator, context):
            async with _Admitted(gate, method, caller, context):
                behavior = handler.unary_unary or handler.stream_unary
                return await behavior(request_or_iterator, context)

        async def streaming(request_or_iterator, context):
            async with _Admitted(gate, method, caller, context):
                behavior = handler.unary_stream or handler.stream_stream
                async for response in behavior(request_or_iterator, context):
                    yield response

        return _same_kind(handler, unary, streaming)


class _Admitted:
    """One admitted call: counts toward the in-flight limit, runs as its caller, turns bad
    input into INVALID_ARGUMENT naming the field and a bug into INTERNAL, and is measured."""

    def __init__(self, gate: Gate, method: str, caller: auth.Principal, context):
        self.gate, self.method, self.caller, self.context = gate, method, caller, context
        self.code: str | None = None

    async def __aenter__(self):
        gate = self.gate
        if gate.in_flight >= gate.in_flight_max:
            gate.metrics.rpc(self.method, "RESOURCE_EXHAUSTED")
            await self.context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     f"more than {gate.in_flight_max} calls in flight; retry")
        gate.in_flight += 1
        _principal.set(self.caller)
        self.started = time.perf_counter()
        return self

    async def __aexit__(self, kind, error, traceback):
        try:
            if isinstance(error, InvalidArgument):
                self.code = "INVALID_ARGUMENT"
                await self.context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            if isinstance(error, Exception) and not isinstance(error, grpc.aio.AbortError):
                self.code = "INTERNAL"
                log.exception("%s failed", self.method, exc_info=error)
                await self.context.abort(grpc.StatusCode.INTERNAL,
                                         "internal error; see server log")
        finally:
            self.gate.in_flight -= 1
            self.gate.metrics.rpc(self.method, self.code or _code_name(self.context),
                                  time.perf_counter() - self.started)
        return False


def _code_name(context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


def _same_kind(handler, unary_behavior, streaming_behavior):
    options = {"request_deserializer": handler.request_deserializer,
               "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_behavior, **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary_behavior, **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming_behavior, **options)
    return grpc.stream_stream_rpc_method_handler(streaming_behavior, **options)


def actor() -> str:
    """Who the audit log names for this call's changes."""
    caller = principal()
    return f"{caller.role}:{caller.binding or caller.key_id}"[:limits.actor_bytes_max]
