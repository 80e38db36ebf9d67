"""kamicore.domain.watching without a server: what a watcher is sent, where it starts, and that
a cursor pruning passed is said, never skipped (a pruning commit is not reachable end to end
before webhooks prune the outbox)."""

from __future__ import annotations

import pytest

from kamicore import limits
from kamicore.domain import events, watching
from kamicore.engine import InvalidArgument
from kamicore.statuses import EventType


class Outbox:
    """The two reads watching makes of the engine: the newest id and the oldest kept."""

    def __init__(self, first: int, head: int):
        self.first, self.head = first, head

    def outbox_first(self) -> int:
        return self.first

    def outbox_head(self) -> int:
        return self.head


def test_the_wire_enum_names_every_event_type_in_order():
    assert [member.name for member in EventType] == [
        name.upper().replace(".", "_") for name in events.TYPES]
    assert [member.value for member in EventType] == list(range(1, len(events.TYPES) + 1))


SOLD_ON_WEB = events.Event(1, events.ORDER_PAID, 0, sku="gift-50", channel="web",
                           owner="storefront:web", order_id="storefront:web/o1")
LOW = events.Event(2, events.STOCK_LOW, 0, sku="gift-50", quantity=3)
REDEEMED = events.Event(3, events.CODE_REDEEMED, 0, sku="gift-50", channel="web",
                        owner="storefront:web", code_id=7, terminal="T-01")


@pytest.mark.parametrize("watch, sent", [
    (watching.watch("admin", "", "admin:k"), [SOLD_ON_WEB, LOW, REDEEMED]),
    (watching.watch("admin", "", "admin:k", channel="app"), []),
    (watching.watch("admin", "", "admin:k", types=[events.STOCK_LOW]), [LOW]),
    (watching.watch("admin", "", "admin:k", skus=["other"]), []),
    (watching.watch("storefront", "web", "storefront:web"), [SOLD_ON_WEB, LOW, REDEEMED]),
    (watching.watch("storefront", "app", "storefront:app"), [LOW]),
    (watching.watch("partner", "", "partner:k"), [LOW]),
    (watching.watch("pos", "T-01", "pos:k"), [REDEEMED]),
    (watching.watch("pos", "T-02", "pos:k"), []),
    (watching.watch("supplier", "S-1", "supplier:k"), []),
], ids=["admin", "admin-other-channel", "admin-type", "admin-other-sku", "own-storefront",
        "other-storefront", "partner", "own-terminal", "other-terminal", "supplier"])
def test_a_watcher_is_sent_what_its_role_sees_narrowed_by_its_filters(watch, sent):
    assert [event for event in (SOLD_ON_WEB, LOW, REDEEMED) if watch.admits(event)] == sent


@pytest.mark.parametrize("role, filters, field", [
    ("admin", {"types": ["order.paid", ""]}, "types[1]"),
    ("admin", {"skus": ["x"] * (limits.watch_skus_max + 1)}, "skus"),
    ("admin", {"skus": ["x" * (limits.name_bytes_max + 1)]}, "skus[0]"),
    ("storefront", {"channel": "web"}, "channel"),
    ("pos", {"channel": "web"}, "channel"),
])
def test_a_bad_filter_names_its_field(role, filters, field):
    with pytest.raises(InvalidArgument) as refused:
        watching.watch(role, "b", "o", **filters)
    assert refused.value.field == field


@pytest.mark.parametrize("first, head, after_id, from_now, start", [
    (0, 0, 0, False, 0),  # nothing yet
    (1, 9, 0, False, 0),  # from the start: everything
    (5, 9, 0, False, 4),  # from the start: the oldest kept
    (5, 9, 4, False, 4),  # resumes where the kept events begin: nothing lost
    (5, 9, 9, False, 9),  # caught up
    (5, 9, 0, True, 9),  # only new events
], ids=["empty", "start", "start-pruned", "resume-at-oldest", "caught-up", "from-now"])
def test_where_a_watcher_starts(first, head, after_id, from_now, start):
    assert watching.start(Outbox(first, head), after_id, from_now) == start


@pytest.mark.parametrize("first, head, after_id, says", [
    (5, 9, 3, "the oldest kept is 5"),  # event 4 is gone
    (0, 9, 3, "none is kept"),  # everything was pruned
    (1, 9, 10, "past the newest event (9)"),
])
def test_a_cursor_pruning_passed_is_out_of_range_naming_where_to_resume(first, head, after_id,
                                                                         says):
    with pytest.raises(watching.OutOfRange) as refused:
        watching.start(Outbox(first, head), after_id, False)
    assert str(refused.value).startswith("after_id: ") and says in str(refused.value)


def test_a_watcher_left_behind_by_pruning_is_told_mid_stream():
    outbox = Outbox(1, 9)
    watching.check_kept(outbox, 0)
    outbox.first = 4  # events 1-3 pruned while the watcher was at 2
    with pytest.raises(watching.OutOfRange, match="after 2 were pruned"):
        watching.check_kept(outbox, 2)
    watching.check_kept(outbox, 3)
