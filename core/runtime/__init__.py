"""Long-running processes and loops: the supervisor, the hold sweeper."""
