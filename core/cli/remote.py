"""Commands that run or call the server: serve, and call (any unary method with JSON)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import limits
from ..config import TARGET_ENV, Config


def command_serve(args) -> int:
    from ..runtime.supervisor import serve
    return serve(args.settings)


def target(args, settings: Config) -> str:
    """Where client commands reach the server: --target, $KAMICORE_TARGET, else the
    configured listen address (as a client on this machine dials it)."""
    return args.target or os.environ.get(TARGET_ENV) or settings.client_target()


def api_key(args) -> str:
    """--key, $KAMICORE_KEY or the first line of --key-file; sent as gRPC metadata, which
    takes printable ASCII only."""
    key = args.key or os.environ.get("KAMICORE_KEY", "")
    if not key and args.key_file:
        key = Path(args.key_file).read_text().strip()
    if any(not " " <= character <= "~" for character in key):
        raise ValueError("the API key holds characters an API key never has (printable "
                         "ASCII only)")
    return key


def unary(args, stub_class, method: str, request):
    """Call one method of a kamicore.v1 stub with the caller's key -> (reply, exit code): 0,
    or (None, 1 or 2) with the refusal on stderr."""
    import grpc
    try:
        key = api_key(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return None, 2
    address = target(args, args.settings)
    with grpc.insecure_channel(address) as channel:
        try:
            return getattr(stub_class(channel), method)(
                request, metadata=[("authorization", f"Bearer {key}")],
                timeout=limits.cli_call_timeout_seconds), 0
        except grpc.RpcError as error:
            details = " ".join((error.details() or "").split())
            print(f"error: {address}: {error.code().name}: {details}", file=sys.stderr)
            return None, 1


def command_call(args) -> int:
    """Call a unary kamicore.v1 method with a JSON request; prints the JSON reply."""
    import grpc
    from google.protobuf import json_format, message_factory
    from google.protobuf.descriptor_pool import Default
    from ..v1 import (  # noqa: F401 - each registers its services for the lookup below
        catalog_pb2, inventory_pb2, orders_pb2, redemption_pb2, reports_pb2, risk_pb2,
        suppliers_pb2, webhooks_pb2,
    )
    service_name, _, method_name = args.method.partition("/")
    try:
        service = Default().FindServiceByName(f"kamicore.v1.{service_name}")
        method = service.methods_by_name[method_name]
    except KeyError:
        print(f"error: no method kamicore.v1.{args.method} (Service/Method, e.g. "
              "Orders/GetOrder)", file=sys.stderr)
        return 2
    if method.client_streaming or method.server_streaming:
        print("error: `call` takes unary methods only", file=sys.stderr)
        return 2
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    try:
        if not isinstance(json.loads(args.json), dict):
            raise json_format.ParseError("the request must be a JSON object")
        request = json_format.Parse(args.json, request_class())
    except (json.JSONDecodeError, json_format.ParseError) as error:
        problem = " ".join(str(error).split())  # protobuf's messages may span lines
        print(f"error: the request is not a valid {method.input_type.full_name} in JSON: "
              f"{problem}", file=sys.stderr)
        return 2
    try:
        key = api_key(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    address = target(args, args.settings)
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(f"/kamicore.v1.{service_name}/{method_name}",
                                   request_serializer=request_class.SerializeToString,
                                   response_deserializer=response_class.FromString)
        try:
            reply = stub(request, metadata=[("authorization", f"Bearer {key}")],
                         timeout=limits.cli_call_timeout_seconds)
        except grpc.RpcError as error:
            details = " ".join((error.details() or "").split())
            print(f"error: {address}: {error.code().name}: {details}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(reply, always_print_fields_with_no_presence=True))
    return 0
