"""Checks that cost nothing and would otherwise fail late: run before any stage, so a user
mistake found here wastes no export or build (and never leaves work half done)."""

from __future__ import annotations

import os
from pathlib import Path

from trtforge import backends as be
from trtforge.errors import PublishError
from trtforge.manifest import Manifest, ModuleSpec


def check_output_dir(out_dir: Path) -> None:
    """The output folder must exist or be creatable, and be writable. os.access, not a chmod
    test: root ignores permission bits, but not a regular file in the way."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PublishError(
            f"cannot create the output folder: {e.strerror}",
            where=str(out_dir),
            hint="set output_dir in [defaults] to a writable folder",
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PublishError(
            "the output folder is not writable",
            where=str(out_dir),
            hint="set output_dir in [defaults] to a writable folder",
        )


def check_foreign_files(out_dir: Path, index: dict | None) -> None:
    """trtforge deletes files it published and replaces files it publishes: a folder holding files
    it did not write (per engines/index.json) is not its to manage."""
    from trtforge.engines_folder import index as engines_index

    alien = engines_index.foreign(out_dir, index)
    if alien:
        more = f" and {len(alien) - 1} more" if len(alien) > 1 else ""
        raise PublishError(
            f"the output folder holds {alien[0]}{more}, which trtforge did not write (not in {engines_index.INDEX})",
            where=str(out_dir),
            hint="move those files away or point output_dir at a folder of its own; or allow "
            "them with --allow-foreign-files (or allow_foreign_files = true in [defaults])",
        )


def preflight(manifest: Manifest, modules: list[ModuleSpec], backend: str | None, allow_foreign: bool = False) -> None:
    from trtforge.driver.publish import published_names
    from trtforge.engines_folder import index as engines_index
    from trtforge.graph_passes import catalog as passes
    from trtforge.precision_rules import catalog as rules

    check_output_dir(manifest.output_dir)
    index = engines_index.load(manifest.output_dir) or engines_index.adopt_legacy(
        manifest.output_dir, published_names(manifest)
    )
    if not (allow_foreign or manifest.allow_foreign_files):
        check_foreign_files(manifest.output_dir, index)
    for module in modules:  # a missing backend or a misspelt pass fails now, not after an export
        be.resolve(backend or module.build.backend, module.name)
        for i, step in enumerate(module.passes):
            passes.check_known(step, f"modules.{module.name}.passes[{i}]", module.name)
        for i, step in enumerate(module.precision_rules):
            rules.check_known(step, f"modules.{module.name}.precision.rules[{i}]", module.name)
