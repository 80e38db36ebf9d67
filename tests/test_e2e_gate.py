"""The gate, end to end: who may call is decided before a request is decoded, and a message
that does not decode is the caller's mistake (INVALID_ARGUMENT naming the request type), never
UNKNOWN or INTERNAL — on unary and streaming methods alike."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pool

from kamicore.auth import METHOD_ROLES
# importing the generated modules registers their descriptors
from kamicore.v1 import (  # noqa: F401
    catalog_pb2, events_pb2, inventory_pb2, orders_pb2, redemption_pb2, risk_pb2, suppliers_pb2,
)

from .server_harness import bearer

NOT_A_MESSAGE = b"\xff"  # a varint that never ends: no message decodes from it
CLIENT_OF_ROLE = {"admin": "admin", "storefront": "web", "partner": "partner", "pos": "pos",
                  "supplier": "supplier"}
STREAMING_REQUESTS = {"/kamicore.v1.Inventory/ImportCodes",
                      "/kamicore.v1.Redemption/RedeemStream"}
SERVER_STREAMING = {"/kamicore.v1.Redemption/RedeemStream"}
REPLY_STREAMING = {"/kamicore.v1.Events/WatchEvents"}  # one request, a stream of replies
# the methods some role may not call (WatchEvents admits every role, each to its own events)
GUARDED = sorted(method for method, roles in METHOD_ROLES.items()
                 if set(CLIENT_OF_ROLE) - set(roles))


def _call(channel, method: str, key: str | None):
    metadata = bearer(key) if key else []
    if method in STREAMING_REQUESTS:
        kind = (channel.stream_stream if method in SERVER_STREAMING else channel.stream_unary)
        call = kind(method)
        reply = call(iter([NOT_A_MESSAGE]), metadata=metadata, timeout=30)
        return list(reply) if method in SERVER_STREAMING else reply
    if method in REPLY_STREAMING:
        return list(channel.unary_stream(method)(NOT_A_MESSAGE, metadata=metadata, timeout=30))
    return channel.unary_unary(method)(NOT_A_MESSAGE, metadata=metadata, timeout=30)


def _refused(channel, method: str, key: str | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        _call(channel, method, key)
    return caught.value


@pytest.mark.parametrize("method", sorted(METHOD_ROLES))
def test_an_undecodable_request_without_a_key_is_unauthenticated(server, method):
    error = _refused(server.channel(), method, None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.details()


@pytest.mark.parametrize("method", GUARDED)
def test_an_undecodable_request_from_a_role_that_may_not_call_is_denied(server, keys, method):
    outsider = next(role for role in CLIENT_OF_ROLE if role not in METHOD_ROLES[method])
    error = _refused(server.channel(), method, keys[CLIENT_OF_ROLE[outsider]])
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error.details()


@pytest.mark.parametrize("method", sorted(METHOD_ROLES))
def test_an_undecodable_request_is_invalid_argument_naming_its_type(server, keys, method):
    key = keys[CLIENT_OF_ROLE[METHOD_ROLES[method][0]]]
    error = _refused(server.channel(), method, key)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    service, name = method.strip("/").split("/")
    request_type = descriptor_pool.Default().FindMethodByName(f"{service}.{name}").input_type
    assert error.details() == f"request: request is not a valid {request_type.full_name}"


def test_refusals_and_bad_messages_leave_no_traceback_in_the_log(server, keys):
    for method in sorted(METHOD_ROLES):
        _refused(server.channel(), method, keys[CLIENT_OF_ROLE[METHOD_ROLES[method][0]]])
    assert "Traceback" not in server.logs()
