"""Authorization without a server: every RPC's proto comment names the roles kamicore.auth
admits (one `// Roles: a, b.` line each, held equal to METHOD_ROLES), a SKU's supplier list
(validated, stored, and absent from SKUs stored before it existed), the per-batch figures a
supplier's GetStock is built from, and the CLI's `sku create --supplier`. The end-to-end rules
are in tests/test_e2e_authorization.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kamicore import limits
from kamicore.auth import METHOD_ROLES, ROLES
from kamicore.domain.catalog import Catalog, ChannelPrice, Sku, validate
from kamicore.engine import InvalidArgument
from kamicore.statuses import CodeState, DeliveryKind

from .support import DAY_MS, T0_MS

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto" / "kamicore" / "v1"
ROLES_LINE = re.compile(r"// Roles: ([a-z]+(?:, [a-z]+)*)\.")


# -- the proto comments and METHOD_ROLES ----------------------------------------------------------

def proto_roles(text: str) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """{full method name: roles} from each rpc's `// Roles: ...` line (in the comment block
    right above it), and the problems found (an rpc without exactly one well-formed line)."""
    package = re.search(r"^package ([\w.]+);", text, re.MULTILINE).group(1)
    roles, problems, service, comments = {}, [], None, []
    for line in text.splitlines():
        line = line.strip()
        if match := re.match(r"service (\w+) \{", line):
            service, comments = match.group(1), []
        elif line.startswith("//"):
            comments.append(line)
        elif match := re.match(r"rpc (\w+)\(", line):
            method = f"/{package}.{service}/{match.group(1)}"
            named = [comment for comment in comments if comment.startswith("// Roles")]
            parsed = [ROLES_LINE.fullmatch(comment) for comment in named]
            if len(named) != 1 or parsed[0] is None:
                problems.append(f"{method}: needs one line '// Roles: <role>, <role>.', has "
                                f"{named}")
            else:
                roles[method] = tuple(parsed[0].group(1).split(", "))
            comments = []
        else:
            comments = []
    return roles, problems


def roles_of_every_proto() -> tuple[dict[str, tuple[str, ...]], list[str]]:
    roles, problems = {}, []
    for path in sorted(PROTO_DIR.glob("*.proto")):
        found, wrong = proto_roles(path.read_text())
        roles.update(found)
        problems += wrong
    return roles, problems


def differences(documented: dict, admitted: dict) -> list[str]:
    """Where the proto comments and METHOD_ROLES disagree, one line each."""
    found = []
    for method in sorted(set(documented) | set(admitted)):
        said, allowed = documented.get(method), admitted.get(method)
        if said is None or allowed is None or set(said) != set(allowed):
            found.append(f"{method}: proto says {said}, METHOD_ROLES says {allowed}")
        elif list(said) != sorted(said, key=ROLES.index) or len(set(said)) != len(said):
            found.append(f"{method}: list each role once, in the order of auth.ROLES {ROLES}")
    return found


def test_every_rpc_comment_names_the_roles_method_roles_admits():
    documented, problems = roles_of_every_proto()
    assert problems == []
    assert {role for roles in documented.values() for role in roles} <= set(ROLES)
    assert differences(documented, METHOD_ROLES) == []


def test_the_check_fails_when_either_side_changes_alone():
    documented, _ = roles_of_every_proto()
    get_stock = "/kamicore.v1.Inventory/GetStock"
    widened = {**METHOD_ROLES, get_stock: (*METHOD_ROLES[get_stock], "pos")}
    assert differences(documented, widened) != []
    narrowed = {**documented, get_stock: ("admin",)}
    assert differences(narrowed, METHOD_ROLES) != []
    missing = {method: roles for method, roles in METHOD_ROLES.items() if method != get_stock}
    assert differences(documented, missing) != []
    text = (PROTO_DIR / "inventory.proto").read_text()
    assert "  // Roles: admin, storefront, partner, supplier.\n" in text
    _, problems = proto_roles(text.replace("  // Roles: admin, storefront, partner, supplier.\n",
                                           ""))
    assert problems == [f"{get_stock}: needs one line '// Roles: <role>, <role>.', has []"]
    _, problems = proto_roles(text.replace("Roles: admin, storefront, partner, supplier.",
                                           "Roles: admin and suppliers"))
    assert len(problems) == 1


# -- a SKU's supplier list ------------------------------------------------------------------------

def _sku(**changes) -> Sku:
    fields = {"sku_id": "gift-50", "name": "Gift 50", "currency": "CNY",
              "face_value_micros": 50_000_000, "delivery_kind": DeliveryKind.CODE,
              "prices": (ChannelPrice("web", 48_000_000),), **changes}
    return Sku(**fields)


@pytest.mark.parametrize("supplier_ids, field", [
    (("S-1", ""), "sku.supplier_ids[1]"),
    (("S-1", "S-2", "S-1"), "sku.supplier_ids[2]"),
    (("S" * (limits.name_bytes_max + 1),), "sku.supplier_ids[0]"),
    (("bad\x01id",), "sku.supplier_ids[0]"),
    (tuple(f"S-{index}" for index in range(limits.suppliers_per_sku_max + 1)),
     "sku.supplier_ids"),
])
def test_a_bad_supplier_list_is_refused_naming_the_entry(supplier_ids, field):
    with pytest.raises(InvalidArgument) as refused:
        validate(_sku(supplier_ids=supplier_ids))
    assert refused.value.field == field


def test_the_supplier_list_is_stored_and_a_sku_stored_before_it_has_none(engine):
    most = tuple(f"S-{index}" for index in range(limits.suppliers_per_sku_max))
    catalog = Catalog(engine)
    catalog.create(_sku(supplier_ids=most))
    assert catalog.get("gift-50").supplier_ids == most
    stored = json.loads(_sku(sku_id="older").encode())
    del stored["supplier_ids"]  # as a SKU was stored before suppliers were listed
    assert Sku.decode(json.dumps(stored).encode()).supplier_ids == ()


# -- the per-batch figures a supplier's GetStock counts ---------------------------------------

def test_batch_stock_splits_sellable_and_expired_like_stock(engine, clock):
    engine.import_codes("sku", "now", ["A-1", "A-2"], supplier="S-1",
                        valid_until_ms=T0_MS + DAY_MS)
    engine.import_codes("sku", "later", ["B-1"], supplier="S-2", valid_from_ms=T0_MS + DAY_MS,
                        valid_until_ms=T0_MS + 3 * DAY_MS)
    engine.import_codes("sku", "forever", ["C-1", "C-2", "C-3"], supplier="S-1")

    def figures():
        batches = {batch.batch: (batch.supplier, batch.sellable, batch.expired_available)
                   for batch in engine.batch_stock("sku")}
        stock = engine.stock("sku")
        assert sum(sellable for _, sellable, _ in batches.values()) == stock.sellable
        assert sum(expired for _, _, expired in batches.values()) == stock.expired_available
        return batches

    assert figures() == {"now": ("S-1", 2, 0), "later": ("S-2", 0, 0),
                         "forever": ("S-1", 3, 0)}
    clock.now_ms = T0_MS + DAY_MS  # "now" expires as "later" starts
    assert figures() == {"now": ("S-1", 0, 2), "later": ("S-2", 1, 0),
                         "forever": ("S-1", 3, 0)}
    by_batch = {batch.batch: batch for batch in engine.batch_stock("sku")}
    assert by_batch["later"].valid_from_ms == T0_MS + DAY_MS
    assert by_batch["now"].counts == {CodeState.AVAILABLE: 2}


# -- the CLI ------------------------------------------------------------------------------------

def test_sku_create_lists_its_suppliers(tmp_path):
    def kamicore(*args):
        return subprocess.run([sys.executable, "-m", "kamicore.cli", "--data-dir",
                               str(tmp_path / "var"), *args], capture_output=True, text=True)

    created = kamicore("sku", "create", "steam-50", "--name", "Steam 50", "--face-value",
                       "50.00", "--price", "web=48.50", "--supplier", "acme",
                       "--supplier", "globex")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["sku"]["supplierIds"] == ["acme", "globex"]
    twice = kamicore("sku", "create", "steam-60", "--name", "Steam 60", "--face-value",
                     "60.00", "--supplier", "acme", "--supplier", "acme")
    assert twice.returncode != 0 and "supplier_ids[1]" in twice.stderr
