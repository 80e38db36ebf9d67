"""Buying an order's codes at payment time (kamicore.domain.code_purchases): the PurchaseCodes
call of one attempt, between the commit that recorded it and the one that settles it.

The top-up Driver (kamicore.runtime.topups) runs these attempts like its own: ConfirmPayment
waits for the first answer up to the supplier's timeout, a failover recorded by the settling
commit is called at once, and the dispatcher's recovery takes up every attempt whose outcome is
not known (after a crash or a timeout) - for a purchase, by sending the same PurchaseCodes
again under the same request id, which the supplier answers as the first time.
The codes go from the supplier's answer into the settling commit's import and nowhere else.
"""

from __future__ import annotations

from ..connectors import Result
from ..domain import code_purchases, suppliers, topups
from ..engine import InvalidArgument

ACTOR = "purchases"


def _checked(engine, attempt: dict, purchase) -> tuple[dict | None, str]:
    """A successful answer as the settling commit imports it -> (answer, "") or (None, why it
    cannot be used)."""
    if len(purchase.codes) != attempt["quantity"]:
        return None, f"{len(purchase.codes)} codes answered for {attempt['quantity']}"
    if purchase.currency != attempt["currency"]:  # a batch's unit cost is in its SKU's
        return None, f"priced in {purchase.currency}, not {attempt['currency']}"
    try:
        terms = engine.check_import_terms(attempt["sku_id"], purchase.batch_id,
                                          attempt["supplier_id"], purchase.unit_cost_micros, 0,
                                          purchase.valid_until_ms or None)
    except InvalidArgument as error:  # the supplier's batch terms (never a code)
        return None, f"{error.field}: {error.message}"
    return {"codes": list(purchase.codes), "batch_id": purchase.batch_id,
            "unit_cost_micros": purchase.unit_cost_micros, "valid_until_ms": terms[5]}, ""


async def call(driver, attempt: dict) -> dict | None:
    """PurchaseCodes for `attempt` (again, under the same request id, when its outcome was not
    known), then the settling commit -> the next attempt that commit recorded (a failover)."""
    engine = driver.engine
    rid = attempt["request_id"]
    async with driver.limit:
        supplier = suppliers.read(engine, attempt["supplier_id"])
        if supplier is None:  # gone from the registry: asked again later
            await _settle(engine, rid, topups.UNKNOWN, "supplier not registered", 0, None)
            return None
        purchase = await driver.connector(supplier).purchase_codes(
            rid, attempt["product"], attempt["quantity"])
    result, message, answer = purchase.result, purchase.message, None
    if result is Result.NOT_FOUND:  # PurchaseCodes cannot say that: not trusted
        result = Result.UNKNOWN
    if result is Result.SUCCEEDED:
        answer, refusal = _checked(engine, attempt, purchase)
        if answer is None:
            result, message = Result.FAILED, f"unusable answer: {refusal}"
    calls = await _settle(engine, rid, result.value, message, purchase.latency_ms, answer)
    return calls[0] if calls else None


async def _settle(engine, rid: str, result: str, message: str, latency_ms: int,
                  answer: dict | None) -> list[dict]:
    _, calls = await engine.run_async(engine.plan(
        code_purchases.settle, (rid, result, message, latency_ms, answer), ACTOR,
        full=lambda: (None, [])))  # full: the attempt stays unsettled, asked again later
    return calls
