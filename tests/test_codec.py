"""The compiled codec reads and writes records in place; the interpreted one uses struct.
Both must produce and accept exactly the same bytes."""

from __future__ import annotations

from hypothesis import given, strategies as st

from kamicore.engine import load_implementation

compiled = load_implementation("compiled").codec
interpreted = load_implementation("interpreted").codec

u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(0, 2**62)
short = st.binary(max_size=255)


@given(st.integers(1, 7), st.integers(0, 7), u32, u32, i64, i64, i64, i64, i64,
       st.integers(0, 2**64 - 1), short, short, st.binary(max_size=300))
def test_records_are_byte_identical_both_ways(state, prior, sku_no, batch_no, valid_from,
                                              valid_until, hold_until, sold_at, redeemed_at,
                                              link, order_id, terminal, sealed):
    packed = []
    for codec in (compiled, interpreted):
        record = codec.new_record(state, sku_no, batch_no, valid_from, valid_until, sealed)
        record.prior_state = prior
        record.hold_until_ms, record.sold_at_ms = hold_until, sold_at
        record.redeemed_at_ms, record.link_code_id = redeemed_at, link
        record.order_id, record.terminal = order_id, terminal
        packed.append(record.pack())
    assert packed[0] == packed[1]
    for codec in (compiled, interpreted):
        record = codec.unpack_record(packed[0])
        assert (record.state, record.prior_state, record.sku_no, record.batch_no,
                record.valid_from_ms, record.valid_until_ms, record.hold_until_ms,
                record.sold_at_ms, record.redeemed_at_ms, record.link_code_id,
                record.order_id, record.terminal, record.sealed) == (
            state, prior, sku_no, batch_no, valid_from, valid_until, hold_until, sold_at,
            redeemed_at, link, order_id, terminal, sealed)


@given(st.binary(max_size=200))
def test_normalisation_and_checks_agree(raw):
    assert compiled.check_code(raw) == interpreted.check_code(raw)
    assert compiled.normalize_code(raw) == interpreted.normalize_code(raw)
    assert compiled.has_control_character(raw) == interpreted.has_control_character(raw)
