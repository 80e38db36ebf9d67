"""kamicore.v1.Catalog: SKUs, their prices per channel and purchase limits."""

from __future__ import annotations

from .. import limits
from ..statuses import SkuLookupStatus
from ..v1 import catalog_pb2, catalog_pb2_grpc
from .gate import actor, principal
from .services import Services
from .views import sku_seen_by
from .wire import sku_from_wire, sku_to_wire


class CatalogService(catalog_pb2_grpc.CatalogServicer):
    def __init__(self, services: Services):
        self.s = services

    async def CreateSku(self, request, context):
        status, sku = await self.s.catalog.create_async(sku_from_wire(request.sku), actor())
        self.s.outcome("CreateSku", status)
        return catalog_pb2.CreateSkuResponse(status=status, sku=sku_to_wire(sku))

    async def GetSku(self, request, context):
        sku = self.s.catalog.get(request.sku_id)
        if sku is None:
            return catalog_pb2.GetSkuResponse(status=SkuLookupStatus.NOT_FOUND)
        return catalog_pb2.GetSkuResponse(status=SkuLookupStatus.FOUND,
                                          sku=sku_to_wire(sku_seen_by(principal(), sku)))

    async def ListSkus(self, request, context):
        """page_size SKUs, or fewer when more would pass limits.skus_page_bytes_max: then the
        token continues after the last one listed."""
        skus, token = self.s.catalog.list(request.page_size, request.page_token)
        caller = principal()
        page, page_bytes = [], 0
        for sku in skus:
            message = sku_to_wire(sku_seen_by(caller, sku))
            page_bytes += limits.length_delimited_bytes(message.ByteSize())
            if page_bytes > limits.skus_page_bytes_max:
                token = page[-1].sku_id  # never the first: one SKU always fits (kamicore.limits)
                break
            page.append(message)
        return catalog_pb2.ListSkusResponse(skus=page, next_page_token=token)

    async def UpdateSku(self, request, context):
        status, sku = await self.s.catalog.update_async(sku_from_wire(request.sku), actor())
        self.s.outcome("UpdateSku", status)
        return catalog_pb2.UpdateSkuResponse(status=status, sku=sku_to_wire(sku))
