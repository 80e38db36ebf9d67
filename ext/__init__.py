# Marks ext/ as a package when its sources run interpreted (kamicore.interpreted); the compiled
# modules are kamicore._codec and kamicore._engine.
