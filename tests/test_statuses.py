"""The compiled engine carries the status and state numbers as C constants; they must be the
numbers of kamicore.statuses (the wire and storage contract). The interpreted engine exposes
the same source's constants to Python, so this checks what the compiled module is built from."""

from __future__ import annotations

import pytest

from kamicore.engine import load_implementation
from kamicore.statuses import (
    CodeOpStatus, CodeState, ConfirmStatus, ImportStatus, ImportCodeStatus, RedeemStatus,
    ReleaseStatus, ReportInvalidStatus, ReserveStatus, VerifyStatus,
)

impl = load_implementation("interpreted")

CONSTANTS = [
    (impl.engine, "IMPORTED", ImportCodeStatus.IMPORTED),
    (impl.engine, "IMPORT_DUPLICATE", ImportCodeStatus.DUPLICATE),
    (impl.codec, "CODE_OK", ImportCodeStatus.IMPORTED),
    (impl.codec, "CODE_EMPTY", ImportCodeStatus.EMPTY),
    (impl.codec, "CODE_TOO_LONG", ImportCodeStatus.TOO_LONG),
    (impl.codec, "CODE_CONTROL_CHARACTER", ImportCodeStatus.CONTROL_CHARACTER),
    (impl.codec, "CODE_NOT_UTF8", ImportCodeStatus.NOT_UTF8),
    (impl.engine, "BATCH_OK", ImportStatus.OK),
    (impl.engine, "BATCH_MISMATCH", ImportStatus.BATCH_MISMATCH),
    *[(impl.engine, f"RESERVE_{member.name}", member) for member in ReserveStatus
      if member not in (ReserveStatus.RESERVED, ReserveStatus.STORAGE_FULL)],
    (impl.engine, "RESERVE_OK", ReserveStatus.RESERVED),
    (impl.engine, "CONFIRM_SOLD", ConfirmStatus.SOLD),
    (impl.engine, "CONFIRM_ORDER_NOT_FOUND", ConfirmStatus.ORDER_NOT_FOUND),
    (impl.engine, "CONFIRM_RELEASED_NO_STOCK", ConfirmStatus.ORDER_RELEASED_NO_STOCK),
    (impl.engine, "RELEASE_OK", ReleaseStatus.RELEASED),
    (impl.engine, "RELEASE_ORDER_NOT_FOUND", ReleaseStatus.ORDER_NOT_FOUND),
    (impl.engine, "RELEASE_ORDER_SOLD", ReleaseStatus.ORDER_SOLD),
    (impl.engine, "REDEEM_OK", RedeemStatus.REDEEMED),
    *[(impl.engine, f"REDEEM_{member.name}", member) for member in RedeemStatus
      if member not in (RedeemStatus.REDEEMED, RedeemStatus.STORAGE_FULL)],
    *[(impl.engine, f"CODE_OP_{member.name}", member) for member in CodeOpStatus
      if member != CodeOpStatus.STORAGE_FULL],
    (impl.engine, "REPORT_REISSUED", ReportInvalidStatus.REISSUED),
    (impl.engine, "REPORT_NO_REPLACEMENT", ReportInvalidStatus.NO_REPLACEMENT),
    (impl.engine, "REPORT_ORDER_NOT_FOUND", ReportInvalidStatus.ORDER_NOT_FOUND),
    (impl.engine, "REPORT_CODE_NOT_IN_ORDER", ReportInvalidStatus.CODE_NOT_IN_ORDER),
    (impl.engine, "REPORT_NOT_SOLD", ReportInvalidStatus.NOT_SOLD),
    *[(impl.engine, f"VERIFY_{member.name}", member) for member in VerifyStatus],
    *[(impl.engine, member.name, member) for member in CodeState],
    *[(impl.codec, f"STATE_{member.name}", member) for member in CodeState],
]


@pytest.mark.parametrize("module, name, member", CONSTANTS,
                         ids=[f"{module.__name__.split('.')[-1]}.{name}"
                              for module, name, _ in CONSTANTS])
def test_engine_constant_matches_the_public_enum(module, name, member):
    assert getattr(module, name) == member.value


def test_every_status_is_numbered_from_one_without_gaps():
    for enum_type in (CodeState, ImportCodeStatus, ImportStatus, ReserveStatus, ConfirmStatus,
                      ReleaseStatus, RedeemStatus, CodeOpStatus, ReportInvalidStatus,
                      VerifyStatus):
        assert [member.value for member in enum_type] == list(range(1, len(enum_type) + 1))


def test_wire_enums_carry_the_engine_numbers():
    """Handlers pass engine statuses straight into replies: the numbers must be the same."""
    from kamicore.v1 import common_pb2, inventory_pb2, orders_pb2, redemption_pb2
    pairs = [
        (CodeState, common_pb2.CodeState, "CODE_STATE_"),
        (RedeemStatus, redemption_pb2.RedeemStatus, "REDEEM_STATUS_"),
        (VerifyStatus, redemption_pb2.VerifyStatus, "VERIFY_STATUS_"),
        (CodeOpStatus, inventory_pb2.CodeOpStatus, "CODE_OP_STATUS_"),
        (ImportCodeStatus, inventory_pb2.ImportCodeStatus, "IMPORT_CODE_STATUS_"),
        (ImportStatus, inventory_pb2.ImportStatus, "IMPORT_STATUS_"),
        (ReportInvalidStatus, orders_pb2.ReportInvalidStatus, "REPORT_INVALID_STATUS_"),
    ]
    for engine_enum, wire_enum, prefix in pairs:
        for member in engine_enum:
            assert wire_enum.Value(prefix + member.name) == member.value, (prefix, member)
