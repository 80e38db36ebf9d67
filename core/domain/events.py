"""Business events: what storefronts, partners, terminals, suppliers and operators hear about
without polling - through WatchEvents and webhooks, both reading the outbox.

Every event is written in the commit of the change that causes it (an outbox beside the audit
log: kamicore.engine.outbox), so an event exists exactly when its change does - a crash loses
neither, and never leaves one without the other:
- code events (redeemed, frozen as leaked, reported invalid, reissued) are the engine's own
  audit blocks of those operations, the compiled redeem path's included: the outbox points at
  the block, and `read` names each transition;
- order, stock, supplier and review events are written by the domain layers with `emit`.

An event id is the cursor: ids only increase and are never reused, so a reader that resumes
after the last id it processed sees every later event once. Ids may skip (an audit block's
transitions that are no business event keep theirs). No event carries a code's plaintext: a
code is named by its code id.

Order events come one per SKU of the order (sku, quantity of that SKU), so that a filter by
SKU sees every order that holds it.
"""

from __future__ import annotations

import dataclasses
import json

from .. import limits
from ..engine.outbox import DomainRecord, Transition
from ..statuses import CodeState

META_TABLE = "order_meta"  # kamicore.domain.orders' (which imports this module)

ORDER_CREATED = "order.created"  # accepted (CREATED or IN_REVIEW); quantity: units
ORDER_PAID = "order.paid"  # payment confirmed, the first time
ORDER_DELIVERED = "order.delivered"  # its codes are the buyer's, or the top-up is done
ORDER_RELEASED = "order.released"  # cancelled or rejected unpaid: units back to stock
ORDER_EXPIRED = "order.expired"  # its hold lapsed unpaid
CODE_REDEEMED = "code.redeemed"  # a POS redeemed a code
CODE_FROZEN = "code.frozen"  # a terminal presented a code never sold: frozen as leaked
CODE_REPORTED_INVALID = "code.reported_invalid"  # a buyer reported a sold code invalid
CODE_REISSUED = "code.reissued"  # the replacement sold in its place (code_id: the new code)
STOCK_LOW = "stock.low"  # sellable stock fell below the SKU's threshold; quantity: sellable
SUPPLIER_ATTEMPT_FAILED = "supplier.attempt_failed"  # a supplier answered FAILED / NOT_FOUND
SUPPLIER_ATTEMPT_FLAGGED = "supplier.attempt_flagged"  # an outcome to look at (detail: why)
REVIEW_NEEDED = "review.needed"  # an order waits for a person's risk review

# In this order the proto's EventType numbers them (1, 2, ...).
TYPES = (ORDER_CREATED, ORDER_PAID, ORDER_DELIVERED, ORDER_RELEASED, ORDER_EXPIRED,
         CODE_REDEEMED, CODE_FROZEN, CODE_REPORTED_INVALID, CODE_REISSUED, STOCK_LOW,
         SUPPLIER_ATTEMPT_FAILED, SUPPLIER_ATTEMPT_FLAGGED, REVIEW_NEEDED)
_CODE_TYPES = {  # (audit operation, the transition's new state) -> the event it is
    ("redeem", CodeState.REDEEMED): CODE_REDEEMED,
    ("leak", CodeState.FROZEN): CODE_FROZEN,
    ("report_invalid", CodeState.INVALID): CODE_REPORTED_INVALID,
    ("report_invalid", CodeState.SOLD): CODE_REISSUED,
}
_POS_TYPES = (CODE_REDEEMED, CODE_FROZEN)
_EVERY_BUYER = (STOCK_LOW,)  # no buyer's data: every storefront and partner may see them
POS_ACTOR_PREFIX = "pos:"  # the actor of a terminal's redemptions (Engine.plan_redeem)


@dataclasses.dataclass(frozen=True)
class Event:
    id: int  # the cursor: resume after the last id processed
    type: str  # one of TYPES
    at_ms: int  # the commit's time
    sku: str = ""
    channel: str = ""  # the sales channel of the order concerned; "" when none
    owner: str = ""  # the order's owner (kamicore.auth.Principal.owner); "" when none
    order_id: str = ""
    code_id: int = 0
    terminal: str = ""
    supplier_id: str = ""
    request_id: str = ""  # the supplier attempt's request id
    quantity: int = 0
    detail: str = ""  # a short machine reason: "late_success", "rejected", ...

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"),
                          sort_keys=True).encode()


_FIELDS = {field.name for field in dataclasses.fields(Event)} - {"id", "type", "at_ms"}


def emit(transaction, type: str, **fields) -> None:
    """In a plan: one event in this commit's outbox."""
    assert type in TYPES and fields.keys() <= _FIELDS, (type, fields.keys() - _FIELDS)
    transaction.append_event(json.dumps({"type": type, **fields}, separators=(",", ":"),
                                        sort_keys=True).encode())


def emit_order(transaction, type: str, order_id: bytes, meta: dict, **fields) -> None:
    """An order event, one per SKU of the order (see the module docstring)."""
    units: dict[str, int] = {}
    for sku, quantity in meta["lines"]:
        units[sku] = units.get(sku, 0) + quantity
    for sku, quantity in units.items():
        emit(transaction, type, sku=sku, quantity=quantity, order_id=order_id.decode(),
             channel=meta["channel"], owner=meta["owner"], **fields)


def emit_attempt(transaction, type: str, attempt: dict, detail: str) -> None:
    """A supplier attempt's event (a top-up's or a bought-code order's)."""
    order_key = attempt["order_id"].encode()
    meta = json.loads(transaction.get(META_TABLE, order_key) or b"{}")
    emit(transaction, type, sku=attempt["sku_id"], order_id=attempt["order_id"],
         channel=meta.get("channel", ""), owner=meta.get("owner", ""),
         supplier_id=attempt["supplier_id"], request_id=attempt["request_id"], detail=detail)


def read(view, after_id: int, limit: int = limits.events_per_page_max
         ) -> tuple[list[Event], int]:
    """The business events with ids above `after_id`, in id order -> (at most `limit` events,
    the cursor to read on from). The cursor passes every outbox entry this page looked at,
    events or not, so a page may hold fewer events than it looked at, or none, and still move
    on; when nothing is newer it is `after_id` again. view: the Engine."""
    orders: dict[str, dict] = {}

    def order(order_id: str) -> dict:
        if order_id not in orders:
            value = view.get(META_TABLE, order_id.encode()) if order_id else None
            orders[order_id] = json.loads(value) if value is not None else {}
        return orders[order_id]

    found = []
    entries = view.outbox_read(after_id, limit)
    for entry in entries:
        if isinstance(entry, DomainRecord):
            fields = json.loads(entry.event)
            found.append(Event(id=entry.event_id, at_ms=entry.at_ms, **fields))
            continue
        assert isinstance(entry, Transition)
        type = _CODE_TYPES.get((entry.operation, entry.to_state))
        if type is None:
            continue
        meta = order(entry.order_id) if type != CODE_FROZEN else {}
        terminal = (entry.terminal if type == CODE_REDEEMED else
                    entry.actor.removeprefix(POS_ACTOR_PREFIX) if type == CODE_FROZEN else "")
        found.append(Event(
            id=entry.event_id, type=type, at_ms=entry.at_ms, sku=entry.sku,
            channel=meta.get("channel", ""), owner=meta.get("owner", ""),
            order_id=entry.order_id if type != CODE_FROZEN else "", code_id=entry.code_id,
            terminal=terminal, quantity=1))
    return found, entries[-1].event_id if entries else after_id


def head(view) -> int:
    """The newest event id committed; 0 when none."""
    return view.outbox_head()


def first(view) -> int:
    """The oldest event id still kept; 0 when none."""
    return view.outbox_first()


def prune(transaction, before_ms: int, keep_after_id: int,
          limit: int = limits.events_pruned_per_commit_max) -> int:
    """Drop up to `limit` of the oldest outbox records older than `before_ms` whose ids are at
    most `keep_after_id` (what every webhook endpoint has acknowledged) -> how many."""
    return transaction.prune_outbox(before_ms, keep_after_id, limit)


def visible(event: Event, role: str, binding: str, owner: str) -> bool:
    """Whether a caller (role, key binding, kamicore.auth.Principal.owner) may see `event`:
    each role sees only its own."""
    if role == "admin":
        return True
    if role == "storefront":
        return event.channel == binding or event.type in _EVERY_BUYER
    if role == "partner":
        return event.owner == owner or event.type in _EVERY_BUYER
    if role == "pos":
        return event.type in _POS_TYPES and event.terminal == binding
    if role == "supplier":
        return event.type.startswith("supplier.") and event.supplier_id == binding
    return False
