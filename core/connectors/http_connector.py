"""The HTTP+JSON connector: `POST {base}/topup`, `/query`, `/purchase` over one aiohttp
ClientSession.

The JSON body is built once and signed as sent (x-kamicore-timestamp, x-kamicore-signature);
the answer must be a 200 whose body verifies against the same two headers of the response
before it is parsed. Any other status (a 5xx, a 4xx from a proxy, a refused signature), a
timeout or a connection error is UNKNOWN: the call may have reached the supplier.
"""

from __future__ import annotations

import json
import time

import aiohttp

from kamicore import limits
from kamicore.connectors import answers
from kamicore.connectors.base import Endpoint, Outcome, Purchase, Result
from kamicore.connectors.signing import signed_headers, verify_headers


def base_url(address: str) -> str:
    if "://" not in address:
        address = "http://" + address
    return address.rstrip("/")


def json_body(document: dict) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class HttpConnector:
    def __init__(self, endpoint: Endpoint):
        assert endpoint.protocol == "http"
        self.endpoint = endpoint
        self._base = base_url(endpoint.address)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: a session belongs to a running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=limits.supplier_http_connections_max),
                timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout_ms / 1000),
                raise_for_status=False)
        return self._session

    async def _call(self, path: str, document: dict) -> tuple[dict | None, str, int]:
        """(answer, "") or (None, why the answer cannot be trusted), and the latency."""
        body = json_body(document)
        headers = {"content-type": "application/json",
                   **signed_headers(self.endpoint.secret, body)}
        started = time.monotonic()
        try:
            # no redirects: the signed call goes to the configured supplier or nowhere
            async with self._client().post(self._base + path, data=body, headers=headers,
                                           allow_redirects=False) as response:
                answer = await _read_at_most(response, limits.supplier_answer_bytes_max)
                status = response.status
                received = {name.lower(): value for name, value in response.headers.items()}
        except TimeoutError:
            return None, "no answer within the timeout", _since(started)
        except aiohttp.ClientError as error:
            return None, f"HTTP: {type(error).__name__}: {error}", _since(started)
        latency_ms = _since(started)
        if status != 200:
            return None, f"HTTP status {status}", latency_ms
        if answer is None:
            return None, "the answer is too long", latency_ms
        reason = verify_headers(self.endpoint.secret, received, answer)
        if reason is not None:
            return None, f"the answer's signature: {reason}", latency_ms
        try:
            parsed = json.loads(answer)
        except (ValueError, UnicodeDecodeError):
            return None, "the answer is not JSON", latency_ms
        if not isinstance(parsed, dict):
            return None, "the answer is not a JSON object", latency_ms
        return parsed, "", latency_ms

    async def top_up(self, request_id: str, product: str, recipient: str, amount_micros: int,
                     currency: str, callback_url: str) -> Outcome:
        answer, why, latency_ms = await self._call("/topup", {
            "request_id": request_id, "product": product, "recipient": recipient,
            "amount_micros": amount_micros, "currency": currency, "callback_url": callback_url})
        if answer is None:
            return answers.unknown(why, latency_ms)
        return answers.outcome(answer, request_id, answers.TOP_UP_RESULTS, latency_ms)

    async def query(self, request_id: str) -> Outcome:
        answer, why, latency_ms = await self._call("/query", {"request_id": request_id})
        if answer is None:
            return answers.unknown(why, latency_ms)
        return answers.outcome(answer, request_id, answers.QUERY_RESULTS, latency_ms)

    async def purchase_codes(self, request_id: str, product: str, quantity: int) -> Purchase:
        answer, why, latency_ms = await self._call("/purchase", {
            "request_id": request_id, "product": product, "quantity": quantity})
        if answer is None:
            return Purchase(Result.UNKNOWN, message=why, latency_ms=latency_ms)
        return answers.purchase(answer, request_id, quantity, latency_ms)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_at_most(response: aiohttp.ClientResponse, bytes_max: int) -> bytes | None:
    """The whole body, or None as soon as it passes bytes_max."""
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(2**16):
        size += len(chunk)
        if size > bytes_max:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
