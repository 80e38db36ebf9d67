# Marks ext/kamicore/ as a package for Cython's cimport lookup (see __init__.py).
