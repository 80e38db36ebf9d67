"""kamicore_client: a typed Python client of the kamicore gRPC API.

    from kamicore_client import Client
    from kamicore_client.v1 import orders_pb2

    with Client("127.0.0.1:50051", api_key) as client:
        reply = client.orders.get_order(orders_pb2.GetOrderRequest(order_id=order_id))

The messages and raw stubs are kamicore_client.v1.*_pb2 / *_pb2_grpc, generated from
proto/kamicore/v1 under a name of their own, so they never collide with the server package
`kamicore` in one environment. Deadlines and retries: kamicore_client.policy.
"""

from kamicore_client.client import IMPORT_CHUNK_CODES, AsyncClient, Client
from kamicore_client.events import AsyncEventStream, EventStream

__all__ = ["IMPORT_CHUNK_CODES", "AsyncClient", "AsyncEventStream", "Client", "EventStream"]
