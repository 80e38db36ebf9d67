# ext/kamicore/ mirrors the installed package: Cython resolves `cython.cimports.kamicore.<module>`
# against the .pxd files here (include path ext/), so compiled modules share C-level declarations
# and import each other as kamicore.<module> at run time. The same sources also load as a plain
# Python package (kamicore.interpreted) for tests and benchmarks.
