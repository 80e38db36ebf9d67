"""Builds the compiled engine and generates the gRPC code; everything else is pyproject.toml."""

import glob
import os
import shutil
import tempfile

from Cython.Build import cythonize
from setuptools import Extension, setup

EXTENSIONS = [
    Extension("kamicore._codec", ["ext/_codec.py"]),
    Extension("kamicore._engine", ["ext/_engine.py"]),
]


def generate_grpc_code() -> None:
    """proto/kamicore/v1/*.proto -> core/v1/*_pb2.py (package kamicore.v1), generated with
    the grpcio-tools that is installed, so the code always matches the protobuf runtime."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(glob.glob("proto/kamicore/v1/*.proto"))
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as out:
        status = protoc.main(["protoc", "-Iproto", f"-I{include}", f"--python_out={out}",
                              f"--grpc_python_out={out}", f"--pyi_out={out}", *protos])
        if status != 0:
            raise SystemExit(f"protoc failed ({status})")
        for generated in glob.glob(os.path.join(out, "kamicore", "v1", "*")):
            shutil.copy(generated, os.path.join("core", "v1", os.path.basename(generated)))


generate_grpc_code()
setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
