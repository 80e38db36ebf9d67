"""Statuses have one source, the proto enums: kamicore.statuses (Python) and the engine's
constants (ext/kamicore/_statuses.pxd when compiled, _statuses.py when interpreted) are generated
from them (tests/test_generated.py holds the generated files to their source). This checks that
the engine uses those constants and keeps no hand-kept copy, and that the wire enums agree."""

from __future__ import annotations

import enum
import importlib
import re

import pytest
from kamicore import interpreted, statuses
from kamicore.engine import load_implementation

impl = load_implementation("interpreted")
generated = importlib.import_module(f"{interpreted.PACKAGE}._statuses")

ENUMS = [getattr(statuses, name) for name in statuses.__all__]


def constant_name(member: enum.IntEnum) -> str:
    """CodeOpStatus.NOT_FOUND -> CODE_OP_STATUS_NOT_FOUND (the proto value name)."""
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", type(member).__name__).upper()
    return f"{prefix}_{member.name}"


CONSTANTS = {constant_name(member): member.value for enum_type in ENUMS for member in enum_type}
# Upper-case integers the engine sources may define themselves: audit operation numbers and
# record format numbers, which are not statuses.
OWN_CONSTANT = re.compile(r"OP_[A-Z_]+|[A-Z_]+_VERSION|[A-Z_]+_BYTES")


def test_the_engine_constants_are_the_enums():
    public = {name: value for name, value in vars(generated).items() if name.isupper()}
    assert public == CONSTANTS


@pytest.mark.parametrize("module", [impl.engine, impl.codec], ids=["_engine", "_codec"])
def test_the_engine_keeps_no_copy_of_a_status(module):
    """Every status or state number the interpreted source sees is the generated constant;
    any other upper-case integer is one of its own (an audit op or a format number)."""
    used = 0
    for name, value in vars(module).items():
        if not name.isupper() or not isinstance(value, int):
            continue
        if name in CONSTANTS:
            assert value == CONSTANTS[name], name
            used += 1
        else:
            assert OWN_CONSTANT.fullmatch(name), f"{module.__name__}.{name} = {value}"
    assert used


def test_the_wire_enums_are_the_same_enums():
    """The gRPC modules and kamicore.statuses come from the same .proto files (one build), so
    this only catches a stale generated file: every wire enum has kamicore.statuses' members."""
    from kamicore.v1 import catalog_pb2, common_pb2, inventory_pb2, orders_pb2, redemption_pb2
    compared = set()
    for module in (catalog_pb2, common_pb2, inventory_pb2, orders_pb2, redemption_pb2):
        for name, wire in module.DESCRIPTOR.enum_types_by_name.items():
            numbers = {value.name: value.number for value in wire.values if value.number}
            assert numbers == {constant_name(member): member.value
                               for member in getattr(statuses, name)}, name
            compared.add(name)
    assert {"CodeState", "OrderState", "RedeemStatus"} <= compared
