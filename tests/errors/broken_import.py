"""A factory module whose own import fails (a dependency that is not installed)."""

import trtforge_no_such_dependency  # noqa: F401


def make():
    return None
