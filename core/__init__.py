"""kamicore: the transaction core for virtual goods (digital codes, 卡密)."""

from .engine import AsyncEngine, Engine, InvalidArgument
from .statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportCodeStatus, ImportStatus, OrderState,
    RedeemStatus, ReleaseStatus, ReportInvalidStatus, ReserveStatus, VerifyStatus,
)

__all__ = [
    "AsyncEngine", "Engine", "InvalidArgument", "CodeOpStatus", "CodeState", "ConfirmStatus",
    "ImportCodeStatus", "ImportStatus", "OrderState", "RedeemStatus", "ReleaseStatus",
    "ReportInvalidStatus", "ReserveStatus", "VerifyStatus",
]
