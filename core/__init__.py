"""kamicore: the transaction core for virtual goods (digital codes, 卡密)."""

from .engine import AsyncEngine, Engine, InvalidArgument
from .statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportStatus, ImportCodeStatus, RedeemStatus,
    ReleaseStatus, ReportInvalidStatus, ReserveStatus, VerifyStatus,
)

__all__ = [
    "AsyncEngine", "Engine", "InvalidArgument", "CodeOpStatus", "CodeState", "ConfirmStatus",
    "ImportStatus", "ImportCodeStatus", "RedeemStatus", "ReleaseStatus", "ReportInvalidStatus",
    "ReserveStatus", "VerifyStatus",
]
