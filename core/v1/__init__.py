# kamicore.v1: code generated from proto/kamicore/v1 at build time (setup.py); not in git.
