"""Statuses have one source, the proto enums: kamicore.statuses (Python) and the engine's
constants (ext/kamicore/_statuses.pxd when compiled, _statuses.py when interpreted) are generated
from them (tests/test_generated.py holds the generated files to their source), and the
precedence of each ladder is declared apart, in kamicore.ladders. This checks that the engine
uses the generated constants and keeps no copy of its own, that every ladder is complete, and
that the wire enums agree."""

from __future__ import annotations

import enum
import importlib
import re

import pytest

from kamicore import statuses
from kamicore.engine import interpreted, load_implementation
from kamicore.ladders import LADDERS

impl = load_implementation("interpreted")
generated = importlib.import_module(f"{interpreted.PACKAGE}._statuses")

ENUMS = [getattr(statuses, name) for name in statuses.__all__
         if isinstance(getattr(statuses, name), enum.EnumMeta)]
STATUS_ENUMS = [enum_type for enum_type in ENUMS if enum_type.__name__.endswith("Status")]


CONSTANTS = {statuses.wire_name(member): member.value
             for enum_type in ENUMS for member in enum_type}
# Upper-case integers the engine sources may define themselves: audit operation numbers and
# record format numbers, which are not statuses.
OWN_CONSTANT = re.compile(r"OP_[A-Z_]+|OUTBOX_[A-Z_]+|[A-Z_]+_VERSION|[A-Z_]+_BYTES")


# -- the engine's constants ---------------------------------------------------------------------

def test_the_engine_constants_are_the_enums():
    public = {name: value for name, value in vars(generated).items() if name.isupper()}
    assert public == CONSTANTS


@pytest.mark.parametrize("module_name", impl.modules)
def test_the_engine_keeps_no_copy_of_a_status(module_name):
    """Every status or state number the interpreted source sees is the generated constant;
    any other upper-case integer is one of its own (an audit op, an outbox record kind or a
    format number)."""
    module = impl.modules[module_name]
    for name, value in vars(module).items():
        if not name.isupper() or not isinstance(value, int):
            continue
        if name in CONSTANTS:
            assert value == CONSTANTS[name], name
        else:
            assert OWN_CONSTANT.fullmatch(name), f"{module.__name__}.{name} = {value}"


def test_the_engine_sees_the_generated_constants():
    """The check above is not vacuous: the engine's modules do use the generated constants."""
    seen = {name for module in impl.modules.values() for name in vars(module)
            if name in CONSTANTS}
    assert len(seen) > 20, seen


# -- ladders ------------------------------------------------------------------------------------

def test_every_status_enum_has_a_ladder():
    assert set(LADDERS) == set(STATUS_ENUMS)


@pytest.mark.parametrize("enum_type", STATUS_ENUMS, ids=lambda enum_type: enum_type.__name__)
def test_a_ladder_orders_every_refusal_once(enum_type):
    """Every member but the success member (number 1) and STORAGE_FULL, each once."""
    ladder = LADDERS[enum_type]
    assert all(type(member) is enum_type for member in ladder), ladder
    assert len(set(ladder)) == len(ladder), f"a rung appears twice: {ladder}"
    rungs = set(enum_type) - {enum_type(1)} - {member for member in enum_type
                                                if member.name == "STORAGE_FULL"}
    assert set(ladder) == rungs


# -- the wire -------------------------------------------------------------------------------------

def test_the_wire_enums_are_the_same_enums():
    """The gRPC modules and kamicore.statuses come from the same .proto files (one build), so
    this only catches a stale generated file: every wire enum has kamicore.statuses' members."""
    from kamicore.v1 import catalog_pb2, common_pb2, inventory_pb2, orders_pb2, redemption_pb2
    compared = set()
    for module in (catalog_pb2, common_pb2, inventory_pb2, orders_pb2, redemption_pb2):
        for name, wire in module.DESCRIPTOR.enum_types_by_name.items():
            numbers = {value.name: value.number for value in wire.values if value.number}
            assert numbers == {statuses.wire_name(member): member.value
                               for member in getattr(statuses, name)}, name
            compared.add(name)
    assert {"CodeState", "OrderState", "RedeemStatus"} <= compared
