"""Commands that run or call the server: serve, and call (any unary method with JSON)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def command_serve(args) -> int:
    from .. import config as config_module
    from ..runtime.supervisor import serve
    overrides = {"data_dir": args.data_dir, "listen": args.listen,
                 "metrics_listen": args.metrics_listen, "workers": args.workers}
    try:
        config = config_module.load(args.config, overrides)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve(config)


def command_call(args) -> int:
    """Call a unary kamicore.v1 method with a JSON request; prints the JSON reply."""
    import grpc
    from google.protobuf import json_format, message_factory
    from google.protobuf.descriptor_pool import Default
    from ..v1 import catalog_pb2, inventory_pb2, orders_pb2, redemption_pb2  # noqa: F401
    service_name, _, method_name = args.method.partition("/")
    try:
        service = Default().FindServiceByName(f"kamicore.v1.{service_name}")
        method = service.methods_by_name[method_name]
    except KeyError:
        print(f"error: no method kamicore.v1.{args.method}", file=sys.stderr)
        return 2
    if method.client_streaming or method.server_streaming:
        print("error: `call` takes unary methods only", file=sys.stderr)
        return 2
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(args.json, request_class())
    key = args.key or os.environ.get("KAMICORE_KEY", "")
    if not key and args.key_file:
        key = Path(args.key_file).read_text().strip()
    with grpc.insecure_channel(args.target) as channel:
        stub = channel.unary_unary(f"/kamicore.v1.{service_name}/{method_name}",
                                   request_serializer=request_class.SerializeToString,
                                   response_deserializer=response_class.FromString)
        try:
            reply = stub(request, metadata=[("authorization", f"Bearer {key}")], timeout=30)
        except grpc.RpcError as error:
            print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(reply, always_print_fields_with_no_presence=True))
    return 0
