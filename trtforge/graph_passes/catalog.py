"""The built-in passes by manifest name (an explicit table: no decorator registry to hunt through).
A manifest may also name a user pass as 'package.module:PassClass'."""

from __future__ import annotations

import difflib
import importlib
import sys
from pathlib import Path

from trtforge.errors import PassError

BUILTIN = {
    "legalize_dtypes": "trtforge.graph_passes.legalize_dtypes:LegalizeDtypesPass",
    "fold_constants": "trtforge.graph_passes.fold_constants:FoldConstantsPass",
    "cleanup": "trtforge.graph_passes.cleanup:CleanupPass",
    "toposort": "trtforge.graph_passes.toposort:ToposortPass",
    "bake_resize": "trtforge.graph_passes.bake_resize:BakeResizePass",
    "bake_transpose": "trtforge.graph_passes.bake_transpose:BakeTransposePass",
    "bake_preprocess": "trtforge.graph_passes.bake_preprocess:BakePreprocessPass",
    "remove_identities": "trtforge.graph_passes.remove_identities:RemoveIdentitiesPass",
    "fold_static_shapes": "trtforge.graph_passes.fold_static_shapes:FoldStaticShapesPass",
}


def check_known(step: dict, where: str, module: str | None = None) -> str:
    """The pass's 'package.module:Class', or a one-line error naming the unknown pass."""
    target = BUILTIN.get(step["name"], step["name"])
    if ":" not in target:
        near = difflib.get_close_matches(step["name"], list(BUILTIN), n=1)
        raise PassError(
            f"unknown pass '{step['name']}' (built-in: {', '.join(BUILTIN)})",
            where=where,
            module=module,
            hint=f"did you mean '{near[0]}'?" if near else "or name a class as 'package.module:PassClass'",
        )
    return target


def make_pass(step: dict, where: str, root: Path | None = None):
    params = {k: v for k, v in step.items() if k != "name"}
    target = check_known(step, where)
    modname, attr = target.split(":")
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        cls = getattr(importlib.import_module(modname), attr)
    except Exception as e:  # the user's module: any error importing it is theirs to fix
        raise PassError(f"cannot load pass '{target}': {type(e).__name__}: {e}", where=where) from e
    from trtforge.graph_passes.base import GraphPass

    # checked before it is called: a name like 'os:system' must not run
    if not (isinstance(cls, type) and issubclass(cls, GraphPass)):
        raise PassError(
            f"'{target}' is {_what(cls)}, not a pass class",
            where=where,
            hint="name a subclass of trtforge.graph_passes.base.GraphPass as 'package.module:PassClass'",
        )
    try:
        return cls(**params)
    except TypeError as e:
        raise PassError(f"bad parameters for pass '{step['name']}': {e}", where=where) from e


def _what(obj) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__name__}"
    return f"a {type(obj).__name__}"
