"""`python -m trtforge`: the same command as the `trtforge` console script."""

from trtforge.cli import main

main(prog_name="trtforge")
