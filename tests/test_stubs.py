"""The .pyi stubs beside ext/kamicore/'s sources are the typed face of the compiled modules
(setup.py installs a copy with the package). They are written by hand, so this holds them to
what the compiled modules really expose, in both directions: the public module-level names, and
the public attributes and methods of each class. Names starting with "_" (dunders included) are
left out, and so are modules a compiled module imports. It covers every compiled module
(kamicore.engine.implementation.COMPILED), and the lists of names that implementation.py builds
the engine's `ops` and `codec` namespaces from."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import kamicore
import pytest
from kamicore.engine import interpreted
from kamicore.engine.implementation import CODEC, COMPILED, NATIVE_OPS, OPS

LOCATIONS = {
    "installed": lambda: Path(kamicore.__file__).parent,
    "source": lambda: interpreted.ext_dir() / "kamicore",
}


def public(names) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def defined(body: list[ast.stmt]):
    """The names a stub's statements define (an import only when it re-exports: `as` itself)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id
        elif isinstance(node, ast.Assign):
            yield from (target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from (alias.asname for alias in node.names if alias.asname == alias.name)


def stub_face(path: Path) -> tuple[set[str], dict[str, set[str]]]:
    """(public module-level names, {class name: its public names}) of a stub."""
    tree = ast.parse(path.read_text(), str(path))
    classes = {node.name: public(defined(node.body)) for node in tree.body
               if isinstance(node, ast.ClassDef)}
    return public(defined(tree.body)), classes


def own_names(cls: type) -> set[str]:
    """A class's public names, less what it inherits from a builtin base (an exception's
    `args`): the stub declares only what the module adds."""
    inherited = set().union(*(dir(base) for base in cls.__mro__[1:]
                              if base.__module__ == "builtins"))
    return public(set(dir(cls)) - inherited)


def module_face(module: types.ModuleType) -> tuple[set[str], dict[str, set[str]]]:
    names = {name for name, value in vars(module).items()
             if not isinstance(value, types.ModuleType)}
    classes = {name: own_names(value) for name, value in vars(module).items()
               if isinstance(value, type) and value.__module__ == module.__name__
               and not name.startswith("_")}
    return public(names), classes


def differences(what: str, stub: set[str], compiled: set[str]) -> list[str]:
    found = []
    if stub - compiled:
        found.append(f"{what}: in the stub only: {sorted(stub - compiled)}")
    if compiled - stub:
        found.append(f"{what}: in the compiled module only: {sorted(compiled - stub)}")
    return found


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("name", COMPILED)
def test_stub_names_equal_the_compiled_module(name, location):
    module = importlib.import_module(f"kamicore.{name}")
    assert module.__file__.endswith((".so", ".pyd")), f"{module.__file__} is not compiled"
    stub_names, stub_classes = stub_face(LOCATIONS[location]() / f"{name}.pyi")
    module_names, module_classes = module_face(module)
    problems = differences(name, stub_names, module_names)
    problems += differences(f"{name} classes", set(stub_classes), set(module_classes))
    for class_name in sorted(set(stub_classes) & set(module_classes)):
        problems += differences(f"{name}.{class_name}", stub_classes[class_name],
                                module_classes[class_name])
    assert not problems, "\n".join(problems)


def test_every_compiled_module_is_listed():
    """MODULES names every module setup.py compiles (the installed extensions) and every
    hand-written source beside them in ext/kamicore/ (the generated _statuses.py is not
    compiled: its constants are cimported from _statuses.pxd)."""
    installed = {path.name.split(".")[0]
                 for path in LOCATIONS["installed"]().glob("_*.so")}
    sources = {path.stem for pattern in ("_*.py", "_*.pyx")
               for path in LOCATIONS["source"]().glob(pattern)
               if path.stem != "__init__" and not path.read_text().startswith("# DO NOT EDIT")}
    assert installed == sources == set(COMPILED)


@pytest.mark.parametrize("name", [*OPS, *CODEC, *NATIVE_OPS])
def test_the_engine_namespaces_list_each_public_name(name):
    """kamicore.engine.implementation assembles `ops` and `codec` from lists of names, module by
    module: together they are each module's public face, no more and no less."""
    listed = set(OPS.get(name, ())) | set(CODEC.get(name, ())) | set(NATIVE_OPS.get(name, ()))
    stub_names, _ = stub_face(LOCATIONS["source"]() / f"{name}.pyi")
    assert not differences(f"{name} in implementation.py", listed, stub_names)
