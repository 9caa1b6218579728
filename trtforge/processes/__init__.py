"""How work runs: every stage in a forked child under a memory budget (`isolate`), Ctrl-C and
SIGTERM (`interrupts`), and progress lines on stderr (`progress`). Shared."""
