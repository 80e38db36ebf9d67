"""Builds the compiled engine; everything else lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

EXTENSIONS = [
    Extension("kamicore._codec", ["ext/_codec.py"]),
    Extension("kamicore._engine", ["ext/_engine.py"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
