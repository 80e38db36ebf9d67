"""A simulated supplier in its own process, serving both wires of the supplier protocol.

    python -m kamicore.connectors.simulator --grpc-listen 127.0.0.1:P --http-listen 127.0.0.1:Q \
        --secret-hex HEX [--latency-ms N --failure-rate R --timeout-rate R --drop-rate R
        --pending-rate R --late-callback-ms N --duplicate-callbacks N --callback-on-final
        --bad-signature-rate R --bad-callback-signature-rate R --hang-ms N --seed N ...]
        [--tls-cert CHAIN.pem --tls-key KEY.pem]

gRPC: kamicore.supplier.v1.SupplierGateway on --grpc-listen. HTTP on --http-listen: the
HTTP+JSON supplier API (POST /topup, /query, /purchase) and, for tests and demos, an inspection
API without authentication (bind it to 127.0.0.1): GET /control/state, POST /control/config
(a JSON object of settings, as the flags name them with "_"), POST /control/reset (forget
everything, back to the starting settings). Behaviour: kamicore.connectors.simulated_supplier.

Port 0 picks a free port; the first line on stdout says what was bound:
`ready grpc=127.0.0.1:P http=127.0.0.1:Q`. Calls whose signature does not verify are refused
(gRPC UNAUTHENTICATED, HTTP 401) and counted. Logs go to stderr and never hold a code.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import ssl
import sys
from pathlib import Path

import grpc
from aiohttp import web
from google.protobuf.message import DecodeError

from kamicore.connectors.signing import verify_headers
from kamicore.connectors.simulated_supplier import (
    Answer, Behaviour, Hang, SimulatedSupplier, dumps,
)
from kamicore.supplier.v1 import supplier_pb2

log = logging.getLogger("kamicore.connectors.simulator")
SERVICE = "kamicore.supplier.v1.SupplierGateway"
request_bytes_max = 2**20
hang_past_deadline_seconds = 0.2  # a timed-out gRPC call answers this long after its deadline


def _message_fields(message) -> dict:
    return {item.name: getattr(message, item.name) for item in message.DESCRIPTOR.fields}


def _to_message(answer: dict, message_type):
    values = dict(answer)
    values["result"] = supplier_pb2.SupplierResult.Value("SUPPLIER_RESULT_" + answer["result"])
    return message_type(**values)


class Servers:
    """Both wires over one SimulatedSupplier."""

    def __init__(self, supplier: SimulatedSupplier):
        self.supplier = supplier
        self.methods = {
            "TopUp": (supplier_pb2.TopUpRequest, supplier_pb2.TopUpResponse, supplier.top_up),
            "QueryTopUp": (supplier_pb2.QueryTopUpRequest, supplier_pb2.TopUpResponse,
                           supplier.query),
            "PurchaseCodes": (supplier_pb2.PurchaseCodesRequest,
                              supplier_pb2.PurchaseCodesResponse, supplier.purchase),
        }

    # -- gRPC ------------------------------------------------------------------------------------
    def grpc_handler(self) -> grpc.GenericRpcHandler:
        def method(name):
            async def handle(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
                return await self._grpc_call(name, body, context)
            # bytes in and out: the signatures cover exactly what travels
            return grpc.unary_unary_rpc_method_handler(handle)
        return grpc.method_handlers_generic_handler(
            SERVICE, {name: method(name) for name in self.methods})

    async def _grpc_call(self, name: str, body: bytes, context) -> bytes:
        request_type, response_type, call = self.methods[name]
        metadata = {item.key: item.value for item in context.invocation_metadata() or ()}
        if verify_headers(self.supplier.secret, metadata, body) is not None:
            self.supplier.refused_calls += 1
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad_signature")
        try:
            request = request_type.FromString(body)
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a " + request_type.__name__)
        try:
            answer = await call(_message_fields(request))
        except Answer as refusal:
            await context.abort(getattr(grpc.StatusCode, refusal.grpc_code), str(refusal))
        except Hang as hang:
            remaining = context.time_remaining()
            await asyncio.sleep(hang.seconds if remaining is None
                                else min(hang.seconds, remaining + hang_past_deadline_seconds))
            if hang.then is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "lost on the way")
            answer = hang.then
        data = _to_message(answer, response_type).SerializeToString()
        context.set_trailing_metadata(tuple(self.supplier.answer_headers(data).items()))
        return data

    # -- HTTP ------------------------------------------------------------------------------------
    def http_application(self) -> web.Application:
        app = web.Application(client_max_size=request_bytes_max)
        for path, name in (("/topup", "TopUp"), ("/query", "QueryTopUp"),
                           ("/purchase", "PurchaseCodes")):
            app.router.add_post(path, self._http_method(name))
        app.router.add_get("/control/state", self._state)
        app.router.add_post("/control/config", self._configure)
        app.router.add_post("/control/reset", self._reset)
        return app

    def _http_method(self, name: str):
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            headers = {key.lower(): value for key, value in request.headers.items()}
            if verify_headers(self.supplier.secret, headers, body) is not None:
                self.supplier.refused_calls += 1
                return web.json_response({"error": "bad_signature"}, status=401)
            try:
                document = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                return web.json_response({"error": "body: not JSON"}, status=400)
            if not isinstance(document, dict):
                return web.json_response({"error": "body: not a JSON object"}, status=400)
            try:
                answer = await self.methods[name][2](document)
            except Answer as refusal:
                return web.json_response({"error": str(refusal)}, status=refusal.http_status)
            except Hang as hang:
                await asyncio.sleep(hang.seconds)
                if hang.then is None:
                    return web.json_response({"error": "lost on the way"}, status=503)
                answer = hang.then
            data = dumps(answer)
            return web.Response(body=data, content_type="application/json",
                                headers=self.supplier.answer_headers(data))
        return handle

    async def _state(self, request: web.Request) -> web.Response:
        return web.Response(body=dumps(self.supplier.state()), content_type="application/json")

    async def _configure(self, request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("body: not a JSON object")
            self.supplier.configure(changes)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(dataclasses.asdict(self.supplier.behaviour))

    async def _reset(self, request: web.Request) -> web.Response:
        self.supplier.reset()
        return web.json_response(dataclasses.asdict(self.supplier.behaviour))


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(grpc_listen: str, http_listen: str, supplier: SimulatedSupplier,
                tls: tuple[str, str] | None = None) -> None:
    """Serve until SIGTERM or SIGINT; tls = (certificate chain PEM file, key PEM file) serves
    both wires over TLS (grpcs:// and https:// for the connectors)."""
    servers = Servers(supplier)
    grpc_server = grpc.aio.server()
    grpc_server.add_generic_rpc_handlers((servers.grpc_handler(),))
    ssl_context = None
    if tls is None:
        grpc_port = grpc_server.add_insecure_port(grpc_listen)
    else:
        chain, key = (Path(path).read_bytes() for path in tls)
        grpc_port = grpc_server.add_secure_port(
            grpc_listen, grpc.ssl_server_credentials([(key, chain)]))
        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(*tls)
    await grpc_server.start()
    runner = web.AppRunner(servers.http_application(), access_log=None)
    await runner.setup()
    host, port = _split(http_listen)
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    http_port = runner.addresses[0][1]
    grpc_host = _split(grpc_listen)[0]
    print(f"ready grpc={grpc_host}:{grpc_port} http={host}:{http_port}", flush=True)
    log.info("simulated supplier serving gRPC on %s:%s and HTTP on %s:%s",
             grpc_host, grpc_port, host, http_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    await stop.wait()
    await grpc_server.stop(0.5)
    await runner.cleanup()
    await supplier.close()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kamicore.connectors.simulator",
                                     description="A simulated supplier (gRPC and HTTP+JSON).")
    parser.add_argument("--grpc-listen", default="127.0.0.1:0")
    parser.add_argument("--http-listen", default="127.0.0.1:0")
    parser.add_argument("--secret-hex", required=True, help="the signing secret, in hex")
    parser.add_argument("--tls-cert", default="", help="serve both wires over TLS: chain PEM")
    parser.add_argument("--tls-key", default="", help="... and its private key PEM")
    defaults = Behaviour()
    for item in dataclasses.fields(Behaviour):
        flag = "--" + item.name.replace("_", "-")
        default = getattr(defaults, item.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        elif item.name == "products":
            parser.add_argument(flag, default="", help="comma-separated; empty: any product")
        elif item.name == "seed":
            parser.add_argument(flag, type=int, default=None)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    arguments = _arguments(argv)
    try:
        secret = bytes.fromhex(arguments.secret_hex)
    except ValueError:
        raise SystemExit("--secret-hex: not hex") from None
    if not secret:
        raise SystemExit("--secret-hex: empty")
    settings = {item.name: getattr(arguments, item.name) for item in dataclasses.fields(Behaviour)}
    settings["products"] = [p for p in settings["products"].split(",") if p]
    try:
        behaviour = Behaviour().updated(settings)
    except ValueError as error:
        raise SystemExit(f"--{str(error).replace('_', '-')}") from None
    if bool(arguments.tls_cert) != bool(arguments.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together")
    tls = (arguments.tls_cert, arguments.tls_key) if arguments.tls_cert else None
    asyncio.run(serve(arguments.grpc_listen, arguments.http_listen,
                      SimulatedSupplier(secret, behaviour), tls))


if __name__ == "__main__":
    main()
