"""The callers behind every service method (kamicore_client._services): each call gets the API
key, the method's deadline (kamicore_client.policy) and, when its request carries a key, the
retries, sending the same request (the same key) every time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from kamicore_client import policy

R = TypeVar("R", bound=Message)
Metadata = tuple[tuple[str, str], ...]


def bearer(api_key: str) -> Metadata:
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("api_key: required, the key `kamicore keys create` printed")
    return (("authorization", f"Bearer {api_key}"),)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class _Base:
    def __init__(self, channel: Any, metadata: Metadata) -> None:
        self._channel = channel
        self._metadata = metadata
        self._callables: dict[tuple[str, str], Any] = {}

    def _callable(self, kind: str, method: str, response: type[Message]) -> Any:
        found = self._callables.get((kind, method))
        if found is None:
            found = getattr(self._channel, kind)(
                method, request_serializer=_serialize, response_deserializer=response.FromString)
            self._callables[(kind, method)] = found
        return found

    @staticmethod
    def _timeout(method: str, timeout: float | None) -> float:
        return policy.DEADLINES_SECONDS[method] if timeout is None else timeout


class SyncCaller(_Base):
    """Calls over a grpc.Channel."""

    def unary(self, method: str, request: Message, response: type[R],
              timeout: float | None) -> R:
        request, keyed = policy.with_key(method, request)
        call = self._callable("unary_unary", method, response)
        attempt = 1
        while True:
            try:
                # a retry waits (within its deadline) for the channel to reconnect
                return call(request, timeout=self._timeout(method, timeout),
                            metadata=self._metadata, wait_for_ready=attempt > 1)
            except grpc.RpcError as error:
                if not (keyed and policy.retryable(error, attempt)):
                    raise
            time.sleep(policy.backoff_seconds(attempt))
            attempt += 1

    def stream_unary(self, method: str, requests: Iterable[Message], response: type[R],
                     timeout: float | None) -> R:
        return self._callable("stream_unary", method, response)(
            (policy.with_item_key(method, request) for request in requests),
            timeout=self._timeout(method, timeout), metadata=self._metadata)

    def unary_stream(self, method: str, request: Message, response: type[R],
                     timeout: float | None) -> Iterator[R]:
        return self._callable("unary_stream", method, response)(
            request, timeout=self._timeout(method, timeout), metadata=self._metadata)

    def stream_stream(self, method: str, requests: Iterable[Message], response: type[R],
                      timeout: float | None) -> Iterator[R]:
        return self._callable("stream_stream", method, response)(
            (policy.with_item_key(method, request) for request in requests),
            timeout=self._timeout(method, timeout), metadata=self._metadata)


async def _keyed(method: str, requests: Iterable[Message] | AsyncIterable[Message]):
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield policy.with_item_key(method, request)
    else:
        for request in requests:
            yield policy.with_item_key(method, request)


class AsyncCaller(_Base):
    """Calls over a grpc.aio.Channel."""

    async def unary(self, method: str, request: Message, response: type[R],
                    timeout: float | None) -> R:
        request, keyed = policy.with_key(method, request)
        call = self._callable("unary_unary", method, response)
        attempt = 1
        while True:
            try:
                # a retry waits (within its deadline) for the channel to reconnect
                return await call(request, timeout=self._timeout(method, timeout),
                                  metadata=self._metadata, wait_for_ready=attempt > 1)
            except grpc.RpcError as error:
                if not (keyed and policy.retryable(error, attempt)):
                    raise
            await asyncio.sleep(policy.backoff_seconds(attempt))
            attempt += 1

    async def stream_unary(self, method: str,
                           requests: Iterable[Message] | AsyncIterable[Message],
                           response: type[R], timeout: float | None) -> R:
        return await self._callable("stream_unary", method, response)(
            _keyed(method, requests), timeout=self._timeout(method, timeout),
            metadata=self._metadata)

    def unary_stream(self, method: str, request: Message, response: type[R],
                     timeout: float | None) -> AsyncIterable[R]:
        return self._callable("unary_stream", method, response)(
            request, timeout=self._timeout(method, timeout), metadata=self._metadata)

    def stream_stream(self, method: str, requests: Iterable[Message] | AsyncIterable[Message],
                      response: type[R], timeout: float | None) -> AsyncIterable[R]:
        return self._callable("stream_stream", method, response)(
            _keyed(method, requests), timeout=self._timeout(method, timeout),
            metadata=self._metadata)
