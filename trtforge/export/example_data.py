"""The data files a module's example inputs are read from, found without numpy: each input's
`file` and the named sets of `verify.input_sets`. Their content (digest) is part of the export key,
so changing a file's bytes re-exports and touching it does not."""

from __future__ import annotations

from pathlib import Path

from trtforge.cache import digest_file
from trtforge.data.sources import data_file
from trtforge.errors import ManifestError
from trtforge.manifest import ModuleSpec


def input_files(module: ModuleSpec, root: Path) -> dict[str, Path]:
    """{input name: its data file}; a missing file is an error naming the field."""
    out = {}
    for spec in module.inputs:
        rel = data_file(spec.source)
        if rel is None:
            continue
        path = root / rel
        if not path.is_file():
            raise ManifestError(
                f"'{rel}' does not exist" + ("" if path.is_absolute() and Path(rel).is_absolute() else f" in {root}"),
                where=f"modules.{module.name}.inputs.{spec.name}.file",
                module=module.name,
                hint="paths are relative to the folder of engines.toml, or absolute",
            )
        out[spec.name] = path
    return out


def named_sets(module: ModuleSpec, root: Path) -> list[tuple[str, Path]]:
    """(label, file) of every named example set, labelled by its path relative to the manifest's
    folder, in path order; a pattern that matches nothing is an error."""
    found: dict[str, Path] = {}
    for i, pattern in enumerate(module.verify.input_sets):
        matches = sorted(p for p in root.glob(pattern) if p.is_file())
        if not matches:
            raise ManifestError(
                f"'{pattern}' matches no file under {root}",
                where=f"modules.{module.name}.verify.input_sets[{i}]",
                module=module.name,
                hint="each set is one .npz holding every input by name",
            )
        for p in matches:
            found.setdefault(p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p), p)
    return sorted(found.items())


def named_set_tag(i: int) -> str:
    """File-name tag of the i-th named set (1-based): inputs.s1.npz, reference.s1.npz, ..."""
    return f".s{i}"


def key_material(module: ModuleSpec, root: Path) -> dict:
    """{"example_data": digests} for the export key; nothing when the module reads no data file
    (its key stays what it was before data files existed)."""
    data = {
        "input_files": {name: digest_file(p) for name, p in input_files(module, root).items()},
        "named_sets": {label: digest_file(p) for label, p in named_sets(module, root)},
    }
    return {"example_data": data} if any(data.values()) else {}
