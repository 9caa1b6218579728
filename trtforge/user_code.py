"""The user's code named as 'package.module:attr' (a module's factory, a pipeline's runner),
imported from the manifest's folder: one resolver, so both say the same one line when the name is
wrong. The caller picks the error class (its stage and exit code) and the field it names."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trtforge.errors import TrtforgeError


def resolve_callable(
    target: str, root: Path, *, where: str, error: type[TrtforgeError], module: str | None = None
) -> Callable[..., Any]:
    """The callable `target` names ('package.module:attr.path', checked by the manifest), with
    `root` on sys.path; a module that does not import, a missing attribute (with the nearest
    name) or something not callable is one `error` naming `where`."""
    modname, attr = target.split(":")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        obj = importlib.import_module(modname)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's code: any error is theirs to fix, sys.exit included
        raise error(
            f"cannot import '{modname}': {type(e).__name__}: {e}",
            where=where,
            module=module,
            hint="check the module path and its imports",
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            near = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=1)
            raise error(
                f"'{modname}' has no attribute '{attr}'",
                where=where,
                module=module,
                hint=f"did you mean '{near[0]}'?" if near else None,
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise error(f"'{target}' is not callable", where=where, module=module)
    return obj
