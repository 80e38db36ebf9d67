"""The HTTP side of supplier callbacks: `POST /v1/callbacks/{supplier_id}`.

This app only carries a callback to its handler; the handler (the dispatcher's) verifies it with
kamicore.connectors.signing, the same way as a gRPC SupplierCallback, and decides. A missing or
malformed timestamp header reaches the handler as 0 and a missing signature as "", so that
verification refuses (and counts) them like any other bad callback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from kamicore import limits
from kamicore.connectors.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, parse_timestamp

log = logging.getLogger(__name__)
# handler(supplier_id, timestamp_ms, body, signature) -> (HTTP status, reason)
Handler = Callable[[str, int, bytes, str], Awaitable[tuple[int, str]]]
PATH = "/v1/callbacks/{supplier_id}"


def application(handler: Handler) -> web.Application:
    """An aiohttp app answering each callback with the handler's status and
    {"status": reason}; bodies over limits.callback_bytes_max are refused (413) unread."""

    async def callback(request: web.Request) -> web.Response:
        supplier_id = request.match_info["supplier_id"]
        timestamp_ms = parse_timestamp(request.headers.get(TIMESTAMP_HEADER)) or 0
        signature = request.headers.get(SIGNATURE_HEADER, "")
        body = await request.read()
        try:
            status, reason = await handler(supplier_id, timestamp_ms, body, signature)
        except Exception:  # a bug in the handler: logged; the supplier may send it again
            log.exception("the callback handler failed (supplier %r)", supplier_id)
            status, reason = 500, "internal"
        return web.json_response({"status": reason}, status=status)

    app = web.Application(client_max_size=limits.callback_bytes_max)
    app.router.add_post(PATH, callback)
    return app
