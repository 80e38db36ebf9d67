# kamicore.supplier.v1: code generated from proto/kamicore/supplier/v1 at build time (setup.py);
# not in git.
