"""engines.toml: load, validate and resolve every default once, at the edge.

Two manifests that mean the same thing resolve to equal `ModuleSpec`s and so hash the same.
Every user mistake is a `ManifestError` naming the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from trtforge.errors import ManifestError
from trtforge.manifest import checks as c
from trtforge.manifest import limits
from trtforge.manifest.modules import parse_defaults, parse_module
from trtforge.manifest.pipelines import PipelineSpec, parse_pipelines
from trtforge.manifest.settings import CACHE
from trtforge.manifest.spec import ModuleSpec
from trtforge.manifest.targets import TargetSpec, parse_targets

TOP_TABLES = ("defaults", "modules", "cache", "targets", "pipelines")


@dataclass(frozen=True)
class Manifest:
    path: Path
    root: Path  # the folder the manifest lives in: factories import and paths resolve from here
    cache_dir: Path
    output_dir: Path
    modules: tuple[ModuleSpec, ...]
    allow_foreign_files: bool = False
    cache: dict = field(default_factory=dict)  # [cache]: remote, read_only, options
    targets: tuple[TargetSpec, ...] = ()  # [targets.NAME]; () = the default target
    pipelines: tuple[PipelineSpec, ...] = ()  # [pipelines.NAME]

    def module(self, name: str) -> ModuleSpec:
        for m in self.modules:
            if m.name == name:
                return m
        known = [m.name for m in self.modules]
        near = difflib.get_close_matches(name, known, n=1)
        raise ManifestError(
            f"no module '{name}'",
            where=str(self.path),
            hint=f"did you mean '{near[0]}'?" if near else f"modules: {', '.join(known)}",
        )


_MODULE_HEADER = re.compile(r'^\s*\[\s*modules\s*\.\s*("([^"]+)"|[A-Za-z0-9_.-]+?)\s*\]\s*(#.*)?$')


def _duplicate_module(text: str) -> tuple[str, int, int] | None:
    """(name, first line, second line) of a [modules.NAME] table declared twice: tomllib's own
    message ("Cannot declare ('modules', 'x') twice") names neither the module nor the first line."""
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _MODULE_HEADER.match(line)
        if m:
            name = m.group(2) or m.group(1)
            if name in seen:
                return name, seen[name], lineno
            seen[name] = lineno
    return None


def _toml(text: str, path: Path) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        dup = _duplicate_module(text)
        if dup:
            raise ManifestError(
                f"module '{dup[0]}' is defined twice (lines {dup[1]} and {dup[2]})",
                where=str(path),
                hint="module names must be unique; rename one",
            ) from None
        raise ManifestError(f"TOML syntax error: {e}", where=str(path), hint="fix the line and column named") from None


def parse_manifest(text: str, path: Path) -> Manifest:
    data = _toml(text, path)
    where = path.name
    for key in data:
        if key not in TOP_TABLES:
            near = difflib.get_close_matches(key, list(TOP_TABLES), n=1)
            raise ManifestError(
                f"unknown top-level table '{key}'",
                where=f"{where}: {key}",
                hint=f"did you mean '{near[0]}'?" if near else "modules go under [modules.NAME]",
            )
    defaults = parse_defaults(data.get("defaults", {}), f"{where}: defaults")
    raw_modules = data.get("modules")
    if not isinstance(raw_modules, dict) or not raw_modules:
        raise ManifestError("no modules", where=f"{where}: modules", hint="add a [modules.NAME] table")
    modules = tuple(parse_module(name, raw, defaults, f"{where}: modules.{name}") for name, raw in raw_modules.items())
    root = path.resolve().parent
    cache_dir = root / defaults["cache_dir"]
    output_dir = root / defaults["output_dir"]
    _check_output_dir(output_dir, cache_dir, root, defaults["output_dir_outside"], f"{where}: defaults.output_dir")
    return Manifest(
        path=path,
        root=root,
        cache_dir=cache_dir,
        output_dir=output_dir,
        modules=modules,
        allow_foreign_files=defaults["allow_foreign_files"],
        cache=c.section(data.get("cache", {}), CACHE, f"{where}: cache"),
        targets=parse_targets(data.get("targets"), f"{where}: targets"),
        pipelines=parse_pipelines(data.get("pipelines"), modules, f"{where}: pipelines"),
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_output_dir(out: Path, cache: Path, root: Path, outside_ok: bool, where: str) -> None:
    """trtforge deletes what it published there and refuses foreign files; a folder that holds the
    project, the home folder or the whole disk must never be that folder. Symlinks resolved first."""
    out, cache = Path(os.path.realpath(out)), Path(os.path.realpath(cache))
    home = Path(os.path.realpath(Path.home()))
    hint = "set output_dir to a folder of its own inside the project, e.g. 'engines'"
    if out == Path(out.anchor) or _inside(home, out):
        raise ManifestError(f"'{out}' is the root or home folder (or contains it)", where=where, hint=hint)
    if _inside(root, out):
        raise ManifestError(f"'{out}' is the manifest's own folder or contains it", where=where, hint=hint)
    if _inside(out, cache) or _inside(cache, out):
        raise ManifestError(f"'{out}' overlaps the cache folder '{cache}'", where=where, hint=hint)
    if not outside_ok and not _inside(out, root):
        raise ManifestError(
            f"'{out}' is outside the manifest's folder '{root}'",
            where=where,
            hint="move it inside, or set output_dir_outside = true in [defaults] if meant",
        )


def with_output_dir(manifest: Manifest, path: str | Path, where: str = "--output-dir") -> Manifest:
    """The manifest publishing into `path` instead (a command-line or $TRTFORGE_OUTPUT_DIR
    override, relative to the current folder). Asked for explicitly, so it may lie outside the
    manifest's folder; every other rule of output_dir holds."""
    out = Path(path).absolute()
    _check_output_dir(out, manifest.cache_dir, manifest.root, True, f"{where} {path}")
    return dataclasses.replace(manifest, output_dir=out)


def load_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    try:
        text = _read_capped(path)
    except FileNotFoundError:
        raise ManifestError("file not found", where=str(path), hint="pass the path of an engines.toml") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"cannot read: {e}", where=str(path)) from None
    return parse_manifest(text, path)


def _read_capped(path: Path) -> str:
    """The manifest's text, refusing what is not a regular file (a FIFO would block, /dev/zero
    never ends) and reading at most MAX_MANIFEST_BYTES + 1 bytes."""
    mode = path.stat().st_mode  # before open: opening a FIFO blocks
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise ManifestError(f"is {kind}", where=str(path), hint="pass the path of an engines.toml")
    with open(path, "rb") as f:
        data = f.read(limits.MAX_MANIFEST_BYTES + 1)
    if len(data) > limits.MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"is larger than the {limits.MAX_MANIFEST_BYTES >> 10} KiB a manifest may be",
            where=str(path),
            hint="pass the path of an engines.toml",
        )
    return data.decode("utf-8")
