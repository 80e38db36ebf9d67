"""docs/api.md, the API reference generated from the proto comments (proto/api_docs.py): current,
and complete enough for a partner's engineer to rely on."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from kamicore import auth

REPO = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("api_docs", REPO / "proto" / "api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_reference_is_what_the_protos_say_now():
    assert (REPO / "docs" / "api.md").read_text() == _generator().document(), (
        "docs/api.md is out of date: run `make docs`")


def test_every_method_is_listed_with_the_roles_it_admits():
    text = (REPO / "docs" / "api.md").read_text()
    for method, roles in auth.METHOD_ROLES.items():
        _, service, name = method.split("/")  # "/kamicore.v1.Orders/CreateOrder"
        service = service.rsplit(".", 1)[1]
        section = text[text.index(f"### {service}\n"):]
        row = re.search(rf"^\| `{name}` \|.*$", section, re.M)
        assert row, f"{method} is not in docs/api.md"
        listed = row.group(0).split(" | ")[2]
        assert {role.strip() for role in listed.split(",")} == {str(role) for role in roles}, \
            method


def test_every_message_field_and_value_says_what_it_means():
    text = (REPO / "docs" / "api.md").read_text()
    assert not [line for line in text.splitlines() if line.endswith("|  |")
                or line.endswith("| |")], "a field or enum value without a comment"
    assert not [line for line in text.splitlines() if line.endswith("`. ")], \
        "a message or enum without a comment"


def test_every_public_proto_names_the_packages_other_languages_generate():
    """Go, Java and C# partners generate from the same files; without these options their
    generated code lands in packages derived from nothing we chose."""
    protos = sorted((REPO / "proto" / "kamicore").glob("*/v1/*.proto")) + sorted(
        (REPO / "proto" / "kamicore" / "v1").glob("*.proto"))
    assert protos
    for path in set(protos):
        text = path.read_text()
        for option in ("go_package", "java_package", "csharp_namespace"):
            assert re.search(rf'^option {option} = "[^"]+";$', text, re.M), (path.name, option)
