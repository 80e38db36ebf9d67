"""Client and AsyncClient: one channel to a kamicore server, every service as an attribute
(client.orders.create_order(...), ...), the API key on every call, a default deadline per method
and retries for keyed calls (kamicore_client.policy); and a streaming import helper."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Sequence
from typing import Any

import grpc

from kamicore_client._calls import AsyncCaller, SyncCaller, bearer
from kamicore_client._services import AsyncServices, Services
from kamicore_client.events import AsyncEventStream, EventStream, EventType, _Resume
from kamicore_client.v1 import inventory_pb2

IMPORT_CHUNK_CODES = 1000  # codes per ImportCodes message (the server takes 1-10,000)
Progress = Callable[[int], None]  # called with the number of codes sent so far


def _credentials(tls: bool | grpc.ChannelCredentials,
                 root_certificates: bytes | None) -> grpc.ChannelCredentials | None:
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    if tls or root_certificates is not None:
        return grpc.ssl_channel_credentials(root_certificates=root_certificates)
    return None


def _check_chunk_codes(chunk_codes: int) -> None:
    if not 1 <= chunk_codes <= 10_000:
        raise ValueError(f"chunk_codes: {chunk_codes} is not within 1-10,000")


class _Chunker:
    """Codes into ImportCodes chunk messages of `chunk_codes` (one piece for the sync and the
    asyncio helper); `sent()` after a message was taken tells `progress` the codes sent so far."""

    def __init__(self, chunk_codes: int, progress: Progress | None):
        self.chunk_codes, self.progress = chunk_codes, progress
        self.count, self.chunk = 0, []

    def add(self, code: str) -> inventory_pb2.ImportCodesRequest | None:
        self.chunk.append(code)
        return self.flush() if len(self.chunk) == self.chunk_codes else None

    def flush(self) -> inventory_pb2.ImportCodesRequest | None:
        """The codes not sent yet as one message (None when there are none)."""
        if not self.chunk:
            return None
        message = inventory_pb2.ImportCodesRequest(chunk=inventory_pb2.CodeChunk(codes=self.chunk))
        self.count, self.chunk = self.count + len(self.chunk), []
        return message

    def sent(self) -> None:
        if self.progress is not None:
            self.progress(self.count)


def _chunks(header: inventory_pb2.ImportHeader, codes: Iterable[str], chunk_codes: int,
            progress: Progress | None) -> Iterator[inventory_pb2.ImportCodesRequest]:
    yield inventory_pb2.ImportCodesRequest(header=header)
    chunker = _Chunker(chunk_codes, progress)
    for code in codes:
        message = chunker.add(code)
        if message is not None:
            yield message
            chunker.sent()
    message = chunker.flush()
    if message is not None:
        yield message
        chunker.sent()


async def _async_codes(codes: Iterable[str] | AsyncIterable[str]):
    if isinstance(codes, AsyncIterable):
        async for code in codes:
            yield code
    else:
        for code in codes:
            yield code


class Client(Services):
    """A kamicore client over one channel. `tls`: False (plaintext, e.g. on 127.0.0.1), True
    (TLS with the system's roots, or `root_certificates`), or grpc.ChannelCredentials (e.g.
    mutual TLS). Close it, or use it as a context manager:

        with Client("127.0.0.1:50051", api_key) as client:
            client.orders.create_order(orders_pb2.CreateOrderRequest(...))
    """

    def __init__(self, address: str, api_key: str, *,
                 tls: bool | grpc.ChannelCredentials = False,
                 root_certificates: bytes | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        metadata = bearer(api_key)
        credentials = _credentials(tls, root_certificates)
        self.channel = (grpc.secure_channel(address, credentials, options=list(options))
                        if credentials is not None
                        else grpc.insecure_channel(address, options=list(options)))
        super().__init__(SyncCaller(self.channel, metadata))

    def import_codes(self, header: inventory_pb2.ImportHeader, codes: Iterable[str], *,
                     chunk_codes: int = IMPORT_CHUNK_CODES, progress: Progress | None = None,
                     timeout: float | None = None) -> inventory_pb2.ImportCodesResponse:
        """Stream `codes` (any iterable: a list, a file's lines...) under `header` in chunks of
        `chunk_codes`; `progress(codes_sent)` is called after each chunk is handed to gRPC (on
        gRPC's sending thread). Not retried; re-sending the same codes is safe (codes already
        stored count as duplicates), whole or from the answer's rows_processed."""
        _check_chunk_codes(chunk_codes)
        return self.inventory.import_codes(_chunks(header, codes, chunk_codes, progress),
                                           timeout=timeout)

    def watch_events(self, after_id: int = 0, *, types: Iterable[EventType] = (),
                     skus: Iterable[str] = (), channel: str = "", from_now: bool = False,
                     timeout: float | None = None) -> EventStream:
        """Events after `after_id` (0: from the oldest kept; from_now: only new ones) that this
        key may see, filtered by `types` ("order.paid" or EventType values), `skus` and, for
        admins, `channel`: an iterator that yields each event once, reconnecting from the last
        one it yielded when the stream breaks (kamicore_client.events). Live when it returns.
        `timeout`: each connection's deadline (it then reconnects)."""
        return EventStream(self.events, _Resume(after_id, types, skus, channel, from_now,
                                                timeout))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClient(AsyncServices):
    """Client for asyncio (grpc.aio): the same services, each method a coroutine (streaming
    replies are async iterables). Close with `await client.close()` or `async with`."""

    def __init__(self, address: str, api_key: str, *,
                 tls: bool | grpc.ChannelCredentials = False,
                 root_certificates: bytes | None = None,
                 options: Sequence[tuple[str, Any]] = ()) -> None:
        metadata = bearer(api_key)
        credentials = _credentials(tls, root_certificates)
        self.channel = (grpc.aio.secure_channel(address, credentials, options=list(options))
                        if credentials is not None
                        else grpc.aio.insecure_channel(address, options=list(options)))
        super().__init__(AsyncCaller(self.channel, metadata))

    async def import_codes(self, header: inventory_pb2.ImportHeader,
                           codes: Iterable[str] | AsyncIterable[str], *,
                           chunk_codes: int = IMPORT_CHUNK_CODES,
                           progress: Progress | None = None,
                           timeout: float | None = None) -> inventory_pb2.ImportCodesResponse:
        """Client.import_codes for asyncio; `codes` may be an async iterable too, and
        `progress` is called on the event loop."""
        _check_chunk_codes(chunk_codes)

        async def requests():
            yield inventory_pb2.ImportCodesRequest(header=header)
            chunker = _Chunker(chunk_codes, progress)
            async for code in _async_codes(codes):
                message = chunker.add(code)
                if message is not None:
                    yield message
                    chunker.sent()
            message = chunker.flush()
            if message is not None:
                yield message
                chunker.sent()

        return await self.inventory.import_codes(requests(), timeout=timeout)

    async def watch_events(self, after_id: int = 0, *, types: Iterable[EventType] = (),
                           skus: Iterable[str] = (), channel: str = "", from_now: bool = False,
                           timeout: float | None = None) -> AsyncEventStream:
        """Client.watch_events for asyncio: `async for event in await client.watch_events()`."""
        return await AsyncEventStream(self.events, _Resume(
            after_id, types, skus, channel, from_now, timeout)).open()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
