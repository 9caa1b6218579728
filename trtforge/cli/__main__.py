"""`python -m trtforge.cli`, as the console script."""

from trtforge.cli import main

main()
