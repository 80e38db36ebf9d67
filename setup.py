"""Builds the compiled engine and generates the gRPC code; everything else is pyproject.toml."""

import glob
import importlib.util
import os
import shutil

from Cython.Build import cythonize
from setuptools import Extension, setup

# ext/kamicore/ mirrors the package, so `cython.cimports.kamicore.X` finds ext/kamicore/X.pxd
EXTENSIONS = [
    # the engine's binding of the system LMDB (Debian's liblmdb-dev; the Makefile installs it)
    Extension("kamicore._lmdb", ["ext/kamicore/_lmdb.pyx"], libraries=["lmdb"]),
    Extension("kamicore._lmdb_cursor", ["ext/kamicore/_lmdb_cursor.pyx"], libraries=["lmdb"]),
    Extension("kamicore._record", ["ext/kamicore/_record.py"]),
    Extension("kamicore._codec", ["ext/kamicore/_codec.py"]),
    Extension("kamicore._engine", ["ext/kamicore/_engine.py"]),
    Extension("kamicore._inventory", ["ext/kamicore/_inventory.py"]),
    Extension("kamicore._orders", ["ext/kamicore/_orders.py"]),
    Extension("kamicore._redemption", ["ext/kamicore/_redemption.py"]),
    # whole redeem batches in C without the GIL (libcrypto for the lookup HMAC and audit hash)
    Extension("kamicore._redeem", ["ext/kamicore/_redeem.pyx"], libraries=["lmdb", "crypto"]),
    # whole import calls in C without the GIL (AES-256-GCM sealing and the HMAC in libcrypto)
    Extension("kamicore._import", ["ext/kamicore/_import.pyx"], libraries=["lmdb", "crypto"]),
]


def generate() -> None:
    """proto/generate.py: the gRPC modules (core/v1, core/supplier/v1) and the status enums
    (core/statuses.py, ext/kamicore/_statuses.*), so both always match proto/ and the installed
    protobuf."""
    spec = importlib.util.spec_from_file_location("kamicore_generate", "proto/generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_status_sources()
    module.grpc_code()


def copy_stubs() -> None:
    """The typed faces (.pyi) of the compiled modules live beside their sources in ext/; the
    installed package carries a copy (a build output, ignored by git)."""
    for stub in glob.glob("ext/kamicore/*.pyi"):
        shutil.copy(stub, os.path.join("core", os.path.basename(stub)))


generate()
copy_stubs()
setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        include_path=["ext"],
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
