"""The engine's per-item code (ext/kamicore/*.py) run by CPython instead of compiled.

Only for tests (the same test body against both) and bench/ (what compiling buys). It needs a
source checkout: ext/ is found beside this package's folder, or at KAMICORE_EXT_DIR.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

PACKAGE = "kamicore_interpreted"


def ext_dir() -> Path:
    configured = os.environ.get("KAMICORE_EXT_DIR")
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parent.parent / "ext")
    for candidate in candidates:
        if (candidate / "kamicore" / "_engine.py").exists():
            return candidate
    raise RuntimeError("the interpreted engine needs ext/ from a source checkout "
                       "(set KAMICORE_EXT_DIR)")


def load(modules) -> dict[str, types.ModuleType]:
    """The named modules (kamicore.engine.implementation.MODULES), imported from ext/ as the
    package kamicore_interpreted."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, ext_dir() / "kamicore" / "__init__.py",
            submodule_search_locations=[str(ext_dir() / "kamicore")])
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return {module: importlib.import_module(f"{PACKAGE}.{module}") for module in modules}
