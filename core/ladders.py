"""The precedence of every operation's status ladder, declared apart from the wire numbers.

An operation checks its refusals one after another and answers the first that applies (a
straight ladder). This declares the order of those checks for each operation's status enum in
kamicore.statuses, leaving out the success member (number 1) and STORAGE_FULL, which is not a
rung: it answers a whole operation whose commit did not fit, and nothing changed.

Wire numbers are append-only: a status keeps the number its .proto file gave it, so numbers say
nothing about precedence (ImportStatus.SKU_NOT_FOUND, numbered 4, is checked before
BATCH_MISMATCH, numbered 2). A new status may sit anywhere in a ladder by editing this
declaration only; no other status is renumbered. The checks follow this order (in the engine's
operation modules ext/kamicore/_inventory.py, _orders.py and _redemption.py, in core/domain/
and core/grpc/), tests/test_engine.py has a row per rung in this order, and
tests/test_statuses.py holds each ladder to a permutation of its enum.
"""

from __future__ import annotations

import enum

from .statuses import (
    CancelOrderStatus,
    CodeOpStatus,
    ConfirmPaymentStatus,
    ConfirmStatus,
    CreateOrderStatus,
    CreateSkuStatus,
    DecideReviewStatus,
    DeleteWebhookStatus,
    ImportCodeStatus,
    ImportStatus,
    OrderLookupStatus,
    RedeemStatus,
    ReconcileSettlementStatus,
    ReconciliationLookupStatus,
    RegisterSupplierStatus,
    RegisterWebhookStatus,
    ReleaseStatus,
    ReportInvalidStatus,
    ReserveStatus,
    RotateKeysStatus,
    SetRiskRulesStatus,
    SkuLookupStatus,
    SupplierCallbackStatus,
    StockStatus,
    SupplierLookupStatus,
    UnlockTerminalStatus,
    UpdateSupplierStatus,
    UpdateWebhookStatus,
    VerifyStatus,
)


LADDERS: dict[type[enum.IntEnum], tuple[enum.IntEnum, ...]] = {
    # -- the engine (ext/kamicore/: _codec.py, _inventory.py, _orders.py, _redemption.py) -------
    ImportCodeStatus: (
        # an empty code is EMPTY at once: nothing above EMPTY can apply to it
        ImportCodeStatus.TOO_LONG,
        ImportCodeStatus.CONTROL_CHARACTER,
        ImportCodeStatus.NOT_UTF8,
        ImportCodeStatus.EMPTY,  # also: nothing left once spaces and dashes are removed
        ImportCodeStatus.DUPLICATE,
    ),
    ReserveStatus: (
        ReserveStatus.ORDER_ID_CONFLICT,
        ReserveStatus.SKU_NOT_FOUND,
        ReserveStatus.INSUFFICIENT_STOCK,
    ),
    ConfirmStatus: (
        ConfirmStatus.ORDER_NOT_FOUND,
        ConfirmStatus.ORDER_RELEASED_NO_STOCK,
    ),
    ReleaseStatus: (
        ReleaseStatus.ORDER_NOT_FOUND,
        ReleaseStatus.ORDER_SOLD,
    ),
    RedeemStatus: (
        RedeemStatus.TERMINAL_LOCKED,  # the whole call, before anything is looked up
        RedeemStatus.MALFORMED,
        RedeemStatus.REQUEST_ID_CONFLICT,  # a known request id answers as it did the first time
        RedeemStatus.NOT_FOUND,
        RedeemStatus.VOID,
        RedeemStatus.INVALID,
        RedeemStatus.FROZEN,
        RedeemStatus.ALREADY_REDEEMED,
        RedeemStatus.NOT_SOLD,
        RedeemStatus.NOT_YET_VALID,
        RedeemStatus.EXPIRED,
    ),
    CodeOpStatus: (
        CodeOpStatus.MALFORMED,
        CodeOpStatus.NOT_FOUND,
        CodeOpStatus.WRONG_STATE,
    ),
    VerifyStatus: (
        VerifyStatus.TERMINAL_LOCKED,  # a terminal's call (core/grpc/redemption.py)
        VerifyStatus.MALFORMED,
        VerifyStatus.NOT_FOUND,
    ),
    UnlockTerminalStatus: (
        UnlockTerminalStatus.NOT_LOCKED,
    ),
    ReportInvalidStatus: (
        ReportInvalidStatus.ORDER_NOT_FOUND,  # also core/grpc/orders.py: not the caller's
        ReportInvalidStatus.CODE_NOT_IN_ORDER,
        ReportInvalidStatus.NOT_SOLD,  # a code already INVALID answers as it did the first time
        ReportInvalidStatus.NO_REPLACEMENT,
    ),
    # -- the catalog (core/domain/catalog.py) and the import stream (core/grpc/inventory.py) ----
    CreateSkuStatus: (
        CreateSkuStatus.ALREADY_EXISTS,
    ),
    SkuLookupStatus: (
        SkuLookupStatus.NOT_FOUND,
    ),
    StockStatus: (
        StockStatus.NOT_FOUND,
    ),
    ImportStatus: (
        ImportStatus.SKU_NOT_FOUND,
        ImportStatus.BATCH_MISMATCH,  # at the first commit: nothing imported
        ImportStatus.INVALID_CHUNK,  # at the bad chunk: the chunks before it imported
    ),
    RotateKeysStatus: (),
    # -- orders (core/domain/orders.py, and core/grpc/orders.py for lookups) -------------------
    CreateOrderStatus: (
        CreateOrderStatus.IDEMPOTENCY_CONFLICT,
        CreateOrderStatus.SKU_NOT_FOUND,
        CreateOrderStatus.DELIVERY_NOT_SUPPORTED,
        CreateOrderStatus.NOT_SOLD_ON_CHANNEL,
        CreateOrderStatus.RISK_REJECTED,  # scored before anything is reserved
        CreateOrderStatus.CHALLENGE_REQUIRED,
        CreateOrderStatus.SCORED,  # a dry run stops here
        CreateOrderStatus.LIMIT_EXCEEDED,
        CreateOrderStatus.INSUFFICIENT_STOCK,
        CreateOrderStatus.IN_REVIEW,  # reserved, but not payable until a person approves
    ),
    DecideReviewStatus: (
        DecideReviewStatus.NOT_FOUND,
        DecideReviewStatus.EXPIRED,
        DecideReviewStatus.ALREADY_DECIDED,
    ),
    SetRiskRulesStatus: (
        SetRiskRulesStatus.VERSION_CONFLICT,
    ),
    ConfirmPaymentStatus: (
        ConfirmPaymentStatus.ORDER_NOT_FOUND,
        ConfirmPaymentStatus.ALREADY_PAID,  # the same payment reference answers PAID again
        ConfirmPaymentStatus.RISK_REJECTED,
        ConfirmPaymentStatus.IN_REVIEW,
        ConfirmPaymentStatus.AMOUNT_MISMATCH,
        ConfirmPaymentStatus.REFUND_REQUIRED,  # also a cancelled top-up order
        # a top-up order past the shared rungs: its state, also to a retry (kamicore.domain.topups)
        ConfirmPaymentStatus.FAILED_REFUND_REQUIRED,
        ConfirmPaymentStatus.PENDING,
        ConfirmPaymentStatus.FULFILLED,
    ),
    CancelOrderStatus: (
        CancelOrderStatus.ORDER_NOT_FOUND,
        CancelOrderStatus.REFUNDED,  # paid: something refunded (kamicore.domain.refunds)
        CancelOrderStatus.ALREADY_PAID,  # paid, nothing refundable
    ),
    # -- supplier callbacks (core/runtime/callbacks.py, kamicore.domain.topups.settle) ---------
    SupplierCallbackStatus: (
        SupplierCallbackStatus.SUPPLIER_NOT_FOUND,
        SupplierCallbackStatus.BAD_SIGNATURE,
        SupplierCallbackStatus.STALE_TIMESTAMP,  # a malformed payload: INVALID_ARGUMENT here
        SupplierCallbackStatus.UNKNOWN_REQUEST,
        SupplierCallbackStatus.REPLAYED,
        SupplierCallbackStatus.CONFLICT,
        SupplierCallbackStatus.DUPLICATE,
        SupplierCallbackStatus.LATE,
    ),
    OrderLookupStatus: (
        OrderLookupStatus.NOT_FOUND,
        OrderLookupStatus.NOT_PAID,
    ),
    # -- suppliers (core/domain/suppliers.py, core/grpc/suppliers.py) --------------------------
    RegisterSupplierStatus: (
        RegisterSupplierStatus.ALREADY_EXISTS,  # a retry with the same definition: REGISTERED
        RegisterSupplierStatus.SKU_NOT_FOUND,  # the routes in order: the first refused is named
        RegisterSupplierStatus.CURRENCY_MISMATCH,
    ),
    UpdateSupplierStatus: (
        UpdateSupplierStatus.NOT_FOUND,
        UpdateSupplierStatus.SKU_NOT_FOUND,
        UpdateSupplierStatus.CURRENCY_MISMATCH,
    ),
    SupplierLookupStatus: (
        SupplierLookupStatus.NOT_FOUND,
    ),
    # -- webhooks (core/domain/webhooks.py) -------------------------------------------------------
    RegisterWebhookStatus: (
        RegisterWebhookStatus.ALREADY_EXISTS,  # a retry with the same definition: REGISTERED
        RegisterWebhookStatus.PARTNER_NOT_FOUND,
        RegisterWebhookStatus.TOO_MANY,
    ),
    UpdateWebhookStatus: (
        UpdateWebhookStatus.NOT_FOUND,
        UpdateWebhookStatus.PARTNER_NOT_FOUND,
    ),
    DeleteWebhookStatus: (
        DeleteWebhookStatus.NOT_FOUND,
    ),
    # -- reconciliation (core/domain/reconciliation.py) ----------------------------------------
    ReconcileSettlementStatus: (
        ReconcileSettlementStatus.ALREADY_RECONCILED,  # the same file: its stored run
        ReconcileSettlementStatus.PERIOD_TOO_LARGE,
    ),
    ReconciliationLookupStatus: (
        ReconciliationLookupStatus.NOT_FOUND,
    ),
}
