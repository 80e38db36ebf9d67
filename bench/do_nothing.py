"""The do-nothing server: one grpc.aio process answering every method with empty bytes (one empty
message per request on a stream), on SO_REUSEPORT so that several processes share a port. It is
the ceiling of the transport, the Python gRPC stack and the client on this machine: kamicore can
only approach it. servers.start_nothing starts it; by hand:

    .venv/bin/python bench/do_nothing.py 127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys


def serve_nothing(listen: str) -> None:
    """One process of the do-nothing server, until SIGTERM or SIGINT."""
    import grpc

    async def unary(request, context):
        return b""

    async def stream(request_iterator, context):
        async for _ in request_iterator:
            yield b""

    class Nothing(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            if handler_call_details.method.endswith("Stream"):
                return grpc.stream_stream_rpc_method_handler(stream)
            return grpc.unary_unary_rpc_method_handler(unary)

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 1),
                                          ("grpc.max_receive_message_length", 4 * 2**20),
                                          ("grpc.max_send_message_length", 4 * 2**20)])
        server.add_generic_rpc_handlers((Nothing(),))
        server.add_insecure_port(listen)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stopping.set)
        print("do-nothing serving", flush=True)
        await stopping.wait()
        await server.stop(1)

    asyncio.run(main())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} HOST:PORT")
    serve_nothing(sys.argv[1])
