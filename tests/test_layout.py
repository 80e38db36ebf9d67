"""The layout's rules, checked on the sources: which package may know what.

- Only kamicore.engine knows LMDB and the compiled engine's internals: it alone imports the
  LMDB binding (kamicore._lmdb), and no module of the package imports py-lmdb (`lmdb`), which
  bundles a second copy of LMDB (tools in their own processes may use it).
- Nothing below kamicore.grpc (domain, engine, runtime, limits, statuses) imports *_pb2; the
  wire layers kamicore.grpc, kamicore.cli and kamicore.connectors (the supplier protocol) may.
- Layers outside the engine use its public API only: no `_ops`, `.dbs`, `.env`, `impl.codec`,
  `_run` or `_sku_no` outside kamicore.engine.
- The engine implements the backend seam (kamicore.engine.api).
- No hand-written source file grows past about 400 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from kamicore.engine import Engine, Transaction
from kamicore.engine.api import Backend, DomainTransaction
from kamicore.engine.implementation import COMPILED as COMPILED_MODULES

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(path for path in (REPO / "core").rglob("*.py")
                 if "v1" not in path.relative_to(REPO / "core").parts)
lines_max = 420  # "about 400"
GENERATED = "# DO NOT EDIT"
COMPILED = tuple(f"kamicore.{module}" for module in COMPILED_MODULES)  # the engine's own


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO / "core").with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, as absolute names (kamicore.x, lmdb, ...)."""
    tree = ast.parse(path.read_text())
    package = ["kamicore", *_module(path).split(".")[:-1]]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _in(path: Path, package: str) -> bool:
    return _module(path) == package or _module(path).startswith(package + ".")


@pytest.mark.parametrize("path", SOURCES, ids=_module)
def test_only_the_engine_knows_lmdb(path):
    if _in(path, "engine"):
        return
    touched = {name for name in _imports(path)
               if name == "lmdb" or name.startswith(COMPILED)}
    assert not touched, f"{_module(path)} imports {touched}"


EXT_SOURCES = sorted((REPO / "ext" / "kamicore").glob("*.py"))


@pytest.mark.parametrize("path", SOURCES + EXT_SOURCES, ids=lambda path: path.name)
def test_no_module_of_the_package_imports_py_lmdb(path):
    """The engine owns the process's LMDB environment through kamicore._lmdb; py-lmdb would
    open the same files with its own copy of LMDB."""
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and not node.level}
    assert not {name for name in names if name.split(".")[0] == "lmdb"}, (
        f"{path.relative_to(REPO)} imports py-lmdb")


@pytest.mark.parametrize("path", SOURCES, ids=_module)
def test_nothing_below_grpc_imports_the_wire(path):
    if _in(path, "grpc") or _in(path, "cli") or _in(path, "connectors"):
        return
    wire = {name for name in _imports(path) if "_pb2" in name or name.startswith("kamicore.v1")
            or name.startswith("kamicore.supplier")}
    assert not wire, f"{_module(path)} imports {wire}"


PRIVATE = re.compile(r"\._ops\b|\.dbs\b|\bengine\.env\b|impl\.codec|\._run\(|\._sku_no\b"
                     r"|\._submit\b")


@pytest.mark.parametrize("path", SOURCES, ids=_module)
def test_layers_outside_the_engine_use_its_public_api(path):
    if _in(path, "engine"):
        return
    found = PRIVATE.findall(path.read_text())
    assert not found, f"{_module(path)} reaches into the engine: {found}"


def test_the_engine_implements_the_backend_seam():
    missing = [name for name in dir(Backend)
               if not name.startswith("_") and not hasattr(Engine, name)]
    assert missing == [] and issubclass(Engine, Backend)
    missing = [name for name in dir(DomainTransaction)
               if not name.startswith("_") and not hasattr(Transaction, name)]
    assert missing == []


def test_the_compiled_engine_declares_only_its_own_sub_databases():
    from kamicore import _engine
    from kamicore.engine.transaction import TABLES
    declared = {name for name in dir(_engine.Dbs) if not name.startswith("_")}
    assert not declared & set(TABLES), declared & set(TABLES)


HAND_WRITTEN = sorted(
    path for folder in ("core", "ext", "tests", "bench", "proto", "clients/python")
    for pattern in ("*.py", "*.pyx", "*.pxd", "*.c") for path in (REPO / folder).rglob(pattern)
    if not (folder == "ext" and pattern == "*.c")  # Cython's output
    if "v1" not in path.parts and not path.read_text().startswith(GENERATED))


@pytest.mark.parametrize("path", HAND_WRITTEN, ids=lambda path: str(path.relative_to(REPO)))
def test_no_hand_written_file_grows_past_about_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= lines_max, f"{path.relative_to(REPO)} has {lines} lines"

