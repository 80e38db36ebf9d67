"""The gRPC connector: kamicore.supplier.v1.SupplierGateway over one grpc.aio channel.

Requests are serialized here and sent as bytes, so the signature covers exactly the bytes on
the wire; the answer is read as bytes too and its signature (initial or trailing metadata)
checked over them before it is parsed. Deadline: the endpoint's timeout_ms per call.
"""

from __future__ import annotations

import time

import grpc
from google.protobuf.message import DecodeError

from kamicore import limits
from kamicore.connectors import answers
from kamicore.connectors.base import Endpoint, Outcome, Purchase, Result
from kamicore.connectors.signing import signed_headers, verify_headers
from kamicore.supplier.v1 import supplier_pb2

SERVICE = "/kamicore.supplier.v1.SupplierGateway/"
_RESULT_PREFIX = "SUPPLIER_RESULT_"


def channel(address: str) -> grpc.aio.Channel:
    options = [("grpc.max_receive_message_length", limits.supplier_answer_bytes_max)]
    if address.startswith("grpcs://"):
        return grpc.aio.secure_channel(address[len("grpcs://"):],
                                       grpc.ssl_channel_credentials(), options=options)
    return grpc.aio.insecure_channel(address.removeprefix("grpc://"), options=options)


def _fields(message) -> dict:
    """A response as the dict answers.py reads (result names without their prefix)."""
    answer = {field.name: value for field, value in message.ListFields()}
    answer.setdefault("request_id", "")
    answer["result"] = supplier_pb2.SupplierResult.Name(message.result).removeprefix(
        _RESULT_PREFIX)
    if "codes" in answer:
        answer["codes"] = list(answer["codes"])
    return answer


class GrpcConnector:
    def __init__(self, endpoint: Endpoint):
        assert endpoint.protocol == "grpc"
        self.endpoint = endpoint
        self._channel = channel(endpoint.address)
        self._methods = {name: self._channel.unary_unary(SERVICE + name)
                         for name in ("TopUp", "QueryTopUp", "PurchaseCodes")}

    async def _call(self, method: str, request, response_type):
        """(response, "") or (None, why the answer cannot be trusted), and the latency."""
        body = request.SerializeToString()
        metadata = tuple(signed_headers(self.endpoint.secret, body).items())
        started = time.monotonic()
        try:
            call = self._methods[method](body, metadata=metadata,
                                         timeout=self.endpoint.timeout_ms / 1000)
            answer = await call
            received = dict(await call.initial_metadata() or ())
            received.update(dict(await call.trailing_metadata() or ()))
        except grpc.aio.AioRpcError as error:
            return None, f"gRPC {error.code().name}: {error.details()}", _since(started)
        latency_ms = _since(started)
        if not isinstance(answer, bytes):
            return None, "the answer is not bytes", latency_ms
        reason = verify_headers(self.endpoint.secret, received, answer)
        if reason is not None:
            return None, f"the answer's signature: {reason}", latency_ms
        try:
            response = response_type.FromString(answer)
        except DecodeError:
            return None, f"the answer is not a {response_type.DESCRIPTOR.name}", latency_ms
        return response, "", latency_ms

    async def top_up(self, request_id: str, product: str, recipient: str, amount_micros: int,
                     currency: str, callback_url: str) -> Outcome:
        request = supplier_pb2.TopUpRequest(
            request_id=request_id, product=product, recipient=recipient,
            amount_micros=amount_micros, currency=currency, callback_url=callback_url)
        response, why, latency_ms = await self._call("TopUp", request, supplier_pb2.TopUpResponse)
        if response is None:
            return answers.unknown(why, latency_ms)
        return answers.outcome(_fields(response), request_id, answers.TOP_UP_RESULTS, latency_ms)

    async def query(self, request_id: str) -> Outcome:
        request = supplier_pb2.QueryTopUpRequest(request_id=request_id)
        response, why, latency_ms = await self._call("QueryTopUp", request,
                                                     supplier_pb2.TopUpResponse)
        if response is None:
            return answers.unknown(why, latency_ms)
        return answers.outcome(_fields(response), request_id, answers.QUERY_RESULTS, latency_ms)

    async def purchase_codes(self, request_id: str, product: str, quantity: int) -> Purchase:
        request = supplier_pb2.PurchaseCodesRequest(request_id=request_id, product=product,
                                                    quantity=quantity)
        response, why, latency_ms = await self._call("PurchaseCodes", request,
                                                     supplier_pb2.PurchaseCodesResponse)
        if response is None:
            return Purchase(Result.UNKNOWN, message=why, latency_ms=latency_ms)
        return answers.purchase(_fields(response), request_id, quantity, latency_ms)

    async def close(self) -> None:
        await self._channel.close()


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
