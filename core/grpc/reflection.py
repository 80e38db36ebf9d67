"""Server reflection under both names clients ask for: grpc.reflection.v1 (what grpcurl and
current tools try first) and grpc.reflection.v1alpha (older tools).

grpcio-reflection implements v1alpha only (grpc/grpc#38576). The two protocols are the same
messages with the same field numbers, so the v1alpha servicer answers v1 calls byte for byte;
v1's file descriptor, v1alpha's renamed, joins the descriptor pool so that reflection can
describe itself under either name."""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
SERVICE_NAMES = (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    """grpc/reflection/v1/reflection.proto: v1alpha's file under v1's package and name."""
    try:
        pool.FindFileByName(V1_FILE_NAME)
        return
    except KeyError:
        pass
    alpha = reflection_pb2.DESCRIPTOR.package
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE_NAME, V1_PACKAGE
    proto.ClearField("options")  # v1alpha's Java and Go package names

    def renamed(type_name: str) -> str:
        return type_name.replace(f".{alpha}.", f".{V1_PACKAGE}.")

    for message in proto.message_type:
        for field in message.field:
            if field.type_name:  # message fields only: setting it on others is an error
                field.type_name = renamed(field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type, method.output_type = (renamed(method.input_type),
                                                     renamed(method.output_type))
    pool.AddSerializedFile(proto.SerializeToString())


def enable(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Serve reflection of `service_names` (and of reflection itself) under v1 and v1alpha."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*service_names, *SERVICE_NAMES))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler})
        for name in SERVICE_NAMES])
