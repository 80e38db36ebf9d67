"""Model-based test: Hypothesis drives the engine and the reference model side by side.

After every step: the answers were equal, the stored counters equal both a full scan and the
model, no code is in two orders, every stored code decrypts, the audit chain verifies, and
sellable stock (which depends on FEFO picking) agrees. Picks are compared code id by code id,
so a FEFO mistake shows up as a different answer.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from kamicore.domain import events
from kamicore.statuses import CodeState

from .backends import BACKENDS
from .reference_model import ReferenceModel
from .support import T0_MS, FakeClock

SKUS = [b"sku-a", b"sku-b", b"sku-missing"]
IMPORTABLE_SKUS = SKUS[:2]
# a small alphabet of codes so that duplicates, case/dash variants and bad codes all happen
CODE_POOL = [b"AB-12", b"ab12", b"A B 1 2", b"CD-34", b"cd34", b"EF-56", b"GH-78", b"IJ-90",
             b"KL-11", b"MN-22", b"OP-33", b"QR-44", b"", b"--", b"X" * 129, b"BAD\x01",
             b"ST-55", b"UV-66", b"WX-77", b"YZ-88"]
VALID_FROM = [0, T0_MS + 5_000]
VALID_UNTIL = [T0_MS + 10_000, T0_MS + 60_000, 2**62]
TERMINALS = [b"T-1", b"T-2"]
REQUEST_IDS = [b"r1", b"r2", b"r3", b"r4"]
ORDER_IDS = [b"o1", b"o2", b"o3", b"o4", b"o5", b"o6"]
BATCHES = [b"b1", b"b2", b"b3", b"b4"]

codes = st.lists(st.sampled_from(CODE_POOL), min_size=1, max_size=8)
lines = st.lists(st.tuples(st.sampled_from(SKUS), st.integers(1, 3)), min_size=1, max_size=3)


class BackendAgainstModel(RuleBasedStateMachine):
    """The body: uses only the backend API (kamicore.engine.api.Backend)."""

    backend = "lmdb-compiled"

    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="kamicore-model-")
        self.clock = FakeClock()
        self.engine = BACKENDS[self.backend](self.directory, self.clock)
        self.model = ReferenceModel(self.clock)

    def teardown(self):
        self.engine.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    code_ids = Bundle("code_ids")

    @rule(target=code_ids, sku=st.sampled_from(IMPORTABLE_SKUS), batch=st.sampled_from(BATCHES),
          batch_codes=codes, valid_from=st.sampled_from(VALID_FROM),
          valid_until=st.sampled_from(VALID_UNTIL))
    def import_codes(self, sku, batch, batch_codes, valid_from, valid_until):
        expected = self.model.import_codes(sku, batch, batch_codes, valid_from_ms=valid_from,
                                           valid_until_ms=valid_until)
        actual = self.engine.import_codes(sku, batch, batch_codes, valid_from_ms=valid_from,
                                          valid_until_ms=valid_until)
        assert actual == expected
        return multiple(*[code_id for code_id in actual.code_ids if code_id])

    @rule(order_id=st.sampled_from(ORDER_IDS), order_lines=lines, hold=st.integers(1, 30))
    def reserve(self, order_id, order_lines, hold):
        orders = [(order_id, order_lines, hold)]
        assert self.engine.reserve(orders) == self.model.reserve(orders)

    @rule(order_ids=st.lists(st.sampled_from(ORDER_IDS + [b"nope"]), min_size=1, max_size=3))
    def confirm(self, order_ids):
        assert self.engine.confirm(order_ids) == self.model.confirm(order_ids)

    @rule(order_ids=st.lists(st.sampled_from(ORDER_IDS + [b"nope"]), min_size=1, max_size=3))
    def release(self, order_ids):
        assert self.engine.release(order_ids) == self.model.release(order_ids)

    @rule(milliseconds=st.sampled_from([0, 1, 999, 5_000, 11_000, 31_000, 61_000, 900_000]))
    def advance_clock(self, milliseconds):
        self.clock.advance(milliseconds)

    @rule(limit=st.integers(1, 4))
    def expire_holds(self, limit):
        assert self.engine.expire_holds(limit=limit) == self.model.expire_holds(limit=limit)

    @rule(items=st.lists(st.tuples(st.sampled_from(CODE_POOL), st.sampled_from(REQUEST_IDS)),
                         min_size=1, max_size=4), terminal=st.sampled_from(TERMINALS))
    def redeem(self, items, terminal):
        assert self.engine.redeem(items, terminal) == self.model.redeem(items, terminal)

    @rule(guesses=st.integers(1, 25), terminal=st.sampled_from(TERMINALS),
          request_id=st.sampled_from(REQUEST_IDS))
    def guess(self, guesses, terminal, request_id):
        """A guesser's batch of codes that do not exist: enough of them lock the terminal."""
        items = [(b"GUESS-%d-%s" % (index, request_id), b"%s-%d" % (request_id, index))
                 for index in range(guesses)]
        assert self.engine.redeem(items, terminal) == self.model.redeem(items, terminal)

    @rule(data=st.data(), terminal=st.sampled_from(TERMINALS))
    def present_unsold(self, data, terminal):
        """A leaked code at a till: one held by an unpaid order (there is one) or in stock."""
        held, in_stock = (sorted(code.plaintext for code in self.model.codes.values()
                                 if code.state == state)
                          for state in (CodeState.RESERVED, CodeState.AVAILABLE))
        unsold = held or in_stock
        if unsold:
            items = [(data.draw(st.sampled_from(unsold)), b"leak-%d" % len(self.model.codes))]
            assert self.engine.redeem(items, terminal) == self.model.redeem(items, terminal)

    @rule(count=st.integers(1, 10), terminal=st.sampled_from(TERMINALS))
    def verify_misses(self, count, terminal):
        """Misses a terminal made with VerifyCode."""
        assert (self.engine.count_misses(terminal, count)
                == self.model.count_misses(terminal, count))

    @rule(terminal=st.sampled_from(TERMINALS))
    def unlock_terminal(self, terminal):
        assert self.engine.unlock_terminal(terminal) == self.model.unlock_terminal(terminal)

    refs = st.lists(st.one_of(st.sampled_from(CODE_POOL), st.integers(1, 30)), min_size=1,
                    max_size=3)

    @rule(code_refs=refs)
    def freeze(self, code_refs):
        assert self.engine.freeze(code_refs) == self.model.freeze(code_refs)

    @rule(code_refs=refs)
    def unfreeze(self, code_refs):
        assert self.engine.unfreeze(code_refs) == self.model.unfreeze(code_refs)

    @rule(code_refs=refs)
    def void(self, code_refs):
        assert self.engine.void(code_refs) == self.model.void(code_refs)

    @rule(order_id=st.sampled_from(ORDER_IDS), code_id=code_ids)
    def report_invalid(self, order_id, code_id):
        items = [(order_id, code_id)]
        assert self.engine.report_invalid(items) == self.model.report_invalid(items)

    @invariant()
    def terminal_states_agree(self):
        for terminal in TERMINALS:
            assert self.engine.terminal_state(terminal) == self.model.terminal_state(terminal)

    @invariant()
    def counters_equal_scan_and_model(self):
        stored = self.engine.counters()
        assert stored == self.engine.scan_counts()
        assert stored == self.model.counts()

    @invariant()
    def stored_state_is_consistent(self):
        # no code in two orders, index agrees with states, every code decrypts, audit chain
        assert self.engine.check() == []

    @invariant()
    def the_outbox_tells_each_redemption_once(self):
        told, cursor = [], 0
        while True:
            page, next_cursor = events.read(self.engine, cursor)
            told += [event.code_id for event in page if event.type == events.CODE_REDEEMED]
            if next_cursor == cursor:
                break
            cursor = next_cursor
        assert sorted(told) == sorted(code_id for code_id, code in self.model.codes.items()
                                      if code.state == CodeState.REDEEMED)

    @invariant()
    def sellable_stock_agrees(self):
        for sku in IMPORTABLE_SKUS:
            stock = self.engine.stock(sku)
            sellable = sum(1 for code in self.model.codes.values()
                           if code.sku == sku and self.model.sellable(code))
            if stock is None:
                assert sku not in self.model.skus
                continue
            assert stock.sellable == sellable
            assert sum(stock.counts.values()) == sum(
                1 for code in self.model.codes.values() if code.sku == sku)
            now = self.clock()
            not_yet_valid = sum(1 for code in self.model.codes.values()
                                if code.sku == sku and code.state == CodeState.AVAILABLE
                                and now < code.valid_from_ms and now < code.valid_until_ms)
            assert stock.counts[CodeState.AVAILABLE] == (
                stock.sellable + stock.expired_available + not_yet_valid)


MODEL_SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])


def _test_case(backend: str):
    machine = type(f"{backend}AgainstModel", (BackendAgainstModel,), {"backend": backend})
    case = machine.TestCase
    case.settings = MODEL_SETTINGS
    return case


# one test class per registered backend: TestLmdbCompiledAgainstModel, ...
for _backend in BACKENDS:
    _name = "".join(part.title() for part in _backend.split("-"))
    globals()[f"Test{_name}AgainstModel"] = _test_case(_backend)
