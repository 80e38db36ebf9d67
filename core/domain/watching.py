"""One event watcher (WatchEvents): which events it gets and where it starts.

What a caller may see is events.visible's (each role only its own); a watcher narrows that by
type, SKU and, for admins, channel. Its cursor is the id of the last event it processed: it
resumes after it and loses nothing - unless pruning dropped events it has not read, which is
said (OutOfRange), never skipped silently.
"""

from __future__ import annotations

import dataclasses

from .. import limits
from ..engine import InvalidArgument
from ..engine.validate import text
from . import events


class OutOfRange(Exception):
    """The cursor cannot be served: events after it were pruned, or it is past the newest."""


@dataclasses.dataclass(frozen=True)
class Watch:
    """A caller (role, key binding, owner namespace) and the filters it asked for; an empty
    filter admits everything the caller may see."""

    role: str
    binding: str
    owner: str
    types: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    channel: str = ""

    def admits(self, event: events.Event) -> bool:
        return ((not self.types or event.type in self.types)
                and (not self.skus or event.sku in self.skus)
                and (not self.channel or event.channel == self.channel)
                and events.visible(event, self.role, self.binding, self.owner))


def watch(role: str, binding: str, owner: str, *, types=(), skus=(),
          channel: str = "") -> Watch:
    """A checked Watch; bad filters are InvalidArgument naming the field."""
    for index, name in enumerate(types):
        if name not in events.TYPES:
            raise InvalidArgument(f"types[{index}]", "is not an event type")
    skus = list(skus)
    if len(skus) > limits.watch_skus_max:
        raise InvalidArgument("skus", f"has more than {limits.watch_skus_max} items")
    for index, sku in enumerate(skus):
        text(sku, f"skus[{index}]", limits.name_bytes_max)
    if channel:
        if role != "admin":
            raise InvalidArgument("channel", f"only an admin key chooses a channel; a {role} "
                                  "key sees its own events: leave it empty")
        text(channel, "channel", limits.binding_bytes_max)
    return Watch(role, binding, owner, frozenset(types), frozenset(skus), channel)


def start(view, after_id: int, from_now: bool) -> int:
    """The cursor a new watcher reads after: `after_id` (0: the oldest event still kept), or
    with `from_now` the newest event committed now. OutOfRange when events after `after_id`
    are gone or `after_id` is past the newest event."""
    if from_now:
        if after_id:
            raise InvalidArgument("from_now", "starts after the newest event: after_id must "
                                  "then be 0")
        return events.head(view)
    newest = events.head(view)
    if after_id > newest:
        raise OutOfRange(f"after_id: {after_id} is past the newest event ({newest}): a cursor "
                         "from another data directory? start again with after_id 0")
    if after_id == 0:
        oldest = events.first(view)
        return oldest - 1 if oldest else newest
    check_kept(view, after_id)
    return after_id


def check_kept(view, cursor: int) -> None:
    """OutOfRange when events after `cursor` were pruned before they were read."""
    oldest = events.first(view)
    if oldest > cursor + 1 or (oldest == 0 and cursor < events.head(view)):
        kept = f"the oldest kept is {oldest}" if oldest else "none is kept"
        resume = oldest - 1 if oldest else events.head(view)
        raise OutOfRange(f"after_id: the events after {cursor} were pruned before they were "
                         f"read ({kept}); after_id {resume} resumes from the oldest kept, "
                         "accepting the loss")
