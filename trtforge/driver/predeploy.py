"""`trtforge verify ENGINES_DIR`: on the target machine, check the folder against engines/index.json
(every file listed, nothing else, every digest matching, no publish left half done), each engine's
sidecar (listed, intact, naming its own module and exactly the index's files), then compatibility
(backend and version, GPU, compute capability), then run it against the bundled reference.

Nothing is trusted beyond its digest: only files the index lists are opened, only after their
digest matched, and only inside the folder (no '..', no absolute path, no symlink). Works on a
copy of the engines folder anywhere: every path is relative."""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from trtforge.cache import digest_file
from trtforge.cache.tempnames import temp_target
from trtforge.engines_folder import index as engines_index
from trtforge.errors import TrtforgeError
from trtforge.manifest import TOLERANCE

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SIDECAR_KEYS = {"module", "files", "backend", "backend_version", "target"}


def _tolerance(sidecar: dict) -> Callable[[str], dict]:
    default = {k: v[1] for k, v in TOLERANCE.items()}
    return lambda name: sidecar.get("tolerance", {}).get(name, default)


def _failed(name: str, reason: str, what: str = "module") -> dict:
    return {"module": name, "status": "failed", "reason": reason, "what": what}


def _unsafe(folder: Path, rel: str) -> str | None:
    """Why `rel` must not be opened: outside the folder, a link, not a file."""
    parts = PurePosixPath(rel).parts
    if not rel or PurePosixPath(rel).is_absolute() or ".." in parts or "\\" in rel:
        return f"{rel!r} is not a path inside the folder"
    path = folder / rel
    if any((folder / Path(*parts[:i])).is_symlink() for i in range(1, len(parts) + 1)):
        return f"{path} is a symbolic link; a published file is never a link"
    if not path.exists():
        return f"{path} is missing; copy the whole engines folder (engines, sidecars, bundles, index.json)"
    if not path.is_file() or folder.resolve() not in path.resolve().parents:
        return f"{path} is not a file inside the folder"
    return None


def _check_files(folder: Path, files: dict, source: str = engines_index.INDEX) -> str | None:
    """Why the files cannot be vouched for; `source`: where their digests were read (index.json,
    or a target folder's own sidecar when it was copied without the index)."""
    for rel, digest in sorted(files.items()):
        why = _unsafe(folder, rel)
        if why:
            return why
        if digest_file(folder / rel, trust_memo=False) != digest:
            return (
                f"{folder / rel} does not match its digest in {source} (corrupt or "
                "replaced); not deserialised; copy the engines folder again or rebuild"
            )
    return None


def _sidecar(folder: Path, name: str, entry: dict) -> dict | str:
    """The module's sidecar, checked against the index; the reason (a str) when it cannot be trusted."""
    rel = entry["sidecar"]
    path = folder / rel
    if rel not in entry["files"]:
        return f"{engines_index.INDEX} names sidecar {rel} without a digest for it"
    try:
        side = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        return f"sidecar {path} is damaged ({type(e).__name__}); rebuild or copy the folder again"
    if not isinstance(side, dict) or not SIDECAR_KEYS <= side.keys() or not isinstance(side["files"], dict):
        return f"sidecar {path} is damaged (not a trtforge sidecar); rebuild or copy the folder again"
    if side["module"] != name.rsplit("/", 1)[-1]:  # "<target>/<module>" with [targets]
        return f"sidecar {path} names module {side['module']!r}, not {name!r}; refused"
    base = PurePosixPath(rel).parent
    listed = {(base / f).as_posix() for f in side["files"] if isinstance(f, str) and "/" not in f and f != ".."}
    if len(listed) != len(side["files"]) or listed | {rel} != set(entry["files"]):
        return f"sidecar {path} and {engines_index.INDEX} list different files; rebuild"
    return side


def check_one(folder: Path, name: str, entry: dict, require_engine_check: bool) -> dict:
    from trtforge.data.tensors import load_arrays
    from trtforge.verify.engine_check import run_engine_sets, why_not_runnable
    from trtforge.verify.metrics import compare_all, merge_sets

    bad = _check_files(folder, entry["files"], entry.get("digests_in", engines_index.INDEX))
    if bad:
        return _failed(name, bad)
    side = _sidecar(folder, name, entry)
    if isinstance(side, str):
        return _failed(name, side)
    stale = entry.get("stale") or side.get("stale")  # a subset build found its inputs moved on
    if stale:
        return _failed(name, str(stale) if str(stale).startswith("stale") else f"stale: {stale}")
    where = folder / PurePosixPath(entry["sidecar"]).parent
    stem = name.rsplit("/", 1)[-1]  # the index names "<target>/<module>" with [targets]
    engine = where / f"{stem}.engine"
    if f"{stem}.engine" not in side["files"]:
        return _failed(name, f"{engine} is missing: its sidecar lists no engine")
    reason = why_not_runnable({"backend": side["backend"], "target": side["target"]}) or _version_mismatch(side)
    if reason:
        return {
            "module": name,
            "status": "failed" if require_engine_check else "not run",
            "reason": f"engine not run here: {reason}",
        }
    sets = _bundle_sets(where, stem, side)
    try:
        outputs, latency = run_engine_sets(
            engine, [load_arrays(i) for i, _ in sets], side["backend"], profiles=side.get("profiles")
        )
    except Exception as e:  # a runtime that refuses the engine is a failed check, not a crash
        return _failed(
            name, f"engine did not run: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        )
    metrics = merge_sets(
        [
            (label.name, compare_all(out, load_arrays(ref), _tolerance(side), load_arrays(label)))
            for (label, ref), out in zip(sets, outputs)
        ]
    )
    failures = [f"{n}: {m['reason']}" for n, m in metrics.items() if not m["ok"]]
    return {
        "module": name,
        "status": "failed" if failures else "ok",
        "reason": "; ".join(failures),
        "outputs": metrics,
        "latency": latency,
    }


def _bundle_sets(folder: Path, name: str, side: dict) -> list[tuple[Path, Path]]:
    """(inputs, reference) files of the example set and of every other set the sidecar lists:
    random sets (.inputs.r1.npz) and the min/opt/max sets of each profile (.inputs.p0.min.npz)."""
    sets = [(folder / f"{name}.inputs.npz", folder / f"{name}.reference.npz")]
    for fname in sorted(side["files"]):
        if fname.startswith(f"{name}.inputs.") and fname != f"{name}.inputs.npz" and fname.endswith(".npz"):
            ref = f"{name}.reference." + fname[len(f"{name}.inputs.") :]
            if ref in side["files"]:
                sets.append((folder / fname, folder / ref))
    return sets


def _version_mismatch(side: dict) -> str | None:
    from trtforge import backends as be

    here = be.version(side["backend"])
    if here != side["backend_version"]:
        return f"engine built with {side['backend']} {side['backend_version']}, this machine has {here}"
    return None


def _folder_checks(folder: Path, notes: list[str] | None = None) -> tuple[dict | None, list[dict]]:
    """The index, and what is wrong with the folder as a whole: no or a damaged index, a publish
    left half done, a file the index does not list (trtforge's own temp file of a listed file,
    left by an interrupted write, is a note in `notes`, not a failure)."""
    path = folder / engines_index.INDEX
    if not path.exists():
        if not any(folder.rglob("*.engine")):
            raise TrtforgeError(
                "no published engines (index.json, <target>/<module>.engine + .json) found",
                where=str(folder),
                hint="pass the engines folder that `trtforge build` wrote",
            )
        up = folder.resolve().parent / engines_index.INDEX
        hint = (
            f"pass {up.parent}, the folder that holds it"
            if up.exists()
            else "rebuild with this trtforge, or copy the whole engines folder"
        )
        return None, [
            _failed(engines_index.INDEX, f"{path} is missing: the folder's content cannot be checked; {hint}", "file")
        ]
    why: str | None
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        doc, why = None, type(e).__name__
    else:
        why = engines_index.problem(doc)
    if why:
        return None, [
            _failed(engines_index.INDEX, f"{path} is damaged ({why}); rebuild or copy the folder again", "file")
        ]
    problems = [
        _failed(
            n, f"its publish was interrupted ({engines_index.INDEX} lists it as pending); run `trtforge build` again"
        )
        for n in sorted(doc["pending"])
    ]
    listed = engines_index.owned(doc) | set(engines_index.TOP_FILES)
    problems += _unlisted(folder, listed, engines_index.INDEX, notes)
    return doc, problems


def _unlisted(folder: Path, listed: set[str], by: str, notes: list[str] | None) -> list[dict]:
    """A failure per file in `folder` that `listed` (what `by` vouches for) does not name; a temp
    file trtforge was writing one of the listed files as is named in `notes` instead."""
    problems = []
    for rel in engines_index.listing(folder):
        if rel in listed:
            continue
        head, _, name = rel.rpartition("/")
        final = temp_target(name)
        if final is not None and (f"{head}/{final}" if head else final) in listed:
            if notes is not None:
                notes.append(
                    f"{folder / rel}: trtforge's own temp file, left by an interrupted write of "
                    f"{final}; not part of the published set"
                )
            continue
        problems.append(
            _failed(
                rel,
                f"{folder / rel} is not listed in {by} (not published by trtforge, "
                "or left by an interrupted build); remove it or rebuild",
                "file",
            )
        )
    return problems


@dataclass(frozen=True)
class PredeployRequest:
    """What `trtforge verify` is asked: `folder` is the output folder (with index.json) or one
    target's folder in it, also copied on its own; only `modules` and `targets` when named; JUnit
    XML to `junit`; with `public_key` (signing.load_public_key), the index.json that vouches for
    the folder must carry a signature it verifies."""

    folder: Path
    modules: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    require_engine_check: bool = False
    junit: str | None = None
    public_key: Ed25519PublicKey | None = None


def verify_published(
    request: PredeployRequest,
    echo: Callable[[str], object] | None = None,
    collect: list | None = None,
    notes: list[str] | None = None,
) -> int:
    """Check the folder and each published engine the request names; echo one line per result
    (None: silent), add each result to `collect`; return the number that failed. Notes
    (trtforge's own leftovers, how the folder was vouched for) go to `notes`."""
    folder, modules, targets = request.folder, request.modules, request.targets
    require_engine_check, junit, public_key = request.require_engine_check, request.junit, request.public_key
    notes = [] if notes is None else notes
    base, doc, results = _vouched(folder, notes)
    if public_key is not None:
        from trtforge.engines_folder.signing import check_signature

        why = check_signature(base, public_key)
        results[:0] = [_failed(engines_index.SIG, why, "file")] if why else []
    if doc is not None:
        if not doc["modules"] and not results:
            raise TrtforgeError(
                "no published engines: index.json lists none",
                where=str(folder),
                hint="build first; a module that fails is not published",
            )
        chosen = _select(doc["modules"], modules, targets, folder)  # a misspelt name: exit 2 before any check
        results += [_timed(check_one, base, name, doc["modules"][name], require_engine_check) for name in chosen]
        if not modules:  # [pipelines.NAME]: re-run with the engines (trtforge/pipelines/target.py)
            results += [
                _timed(_check_pipeline, base, name, entry, doc["modules"], require_engine_check)
                for name, entry in sorted(doc.get("pipelines", {}).items())
            ]
    if collect is not None:
        collect.extend(results)
    if echo is not None:
        for r in results:
            echo(f"{r['module']}: {r['status']}" + (f": {r['reason']}" if r.get("reason") else ""))
    if junit:
        Path(junit).parent.mkdir(parents=True, exist_ok=True)
        Path(junit).write_text(junit_xml(results))
    return sum(r["status"] == "failed" for r in results)


def _vouched(folder: Path, notes: list[str]) -> tuple[Path, dict | None, list[dict]]:
    """(the folder paths are relative to, the index, folder-level failures). A target's folder:
    in place, the output folder's index restricted to it; copied on its own, an index made of
    its sidecars (each names its files' digests)."""
    if (folder / engines_index.INDEX).exists() or not folder.is_dir():
        doc, problems = _folder_checks(folder, notes)
        return folder, doc, problems
    parent = folder.resolve().parent
    up = parent / engines_index.INDEX
    if up.exists():
        seen: list[str] = []
        doc, problems = _folder_checks(parent, seen)
        prefix = f"{folder.resolve().name}/"
        if doc is None:  # the output folder's index is damaged: nothing in it can be vouched for
            return parent, None, problems
        mine = {n: e for n, e in doc["modules"].items() if e["sidecar"].startswith(prefix)}
        if mine:
            notes += [n for n in seen if n.startswith(f"{parent / prefix}")]  # this folder's leftovers
            problems = [p for p in problems if p.get("what") != "file" or p["module"].startswith(prefix)]
            problems = [p for p in problems if p.get("what") == "file" or p["module"] in mine]
            return parent, {**doc, "modules": mine}, problems
    doc = _sidecar_index(folder)
    if doc is None:
        base_doc, problems = _folder_checks(folder, notes)  # the one-line "nothing here" errors
        return folder, base_doc, problems
    notes.append(
        f"{folder} has no {engines_index.INDEX} (one target's folder, copied on its own): each engine is "
        "checked against its own sidecar's digests"
    )
    listed = {f for e in doc["modules"].values() for f in e["files"]}
    return folder, doc, _unlisted(folder, listed, "any sidecar", notes)


def _check_pipeline(folder: Path, name: str, entry: dict, published: dict, require_engine_check: bool) -> dict:
    from trtforge.pipelines.target import STATUS, check_on_target

    bad = _check_files(folder, entry["files"])
    if bad:
        return _failed(STATUS.format(name), bad, "pipeline")
    try:
        return check_on_target(folder, name, entry, published, require_engine_check)
    except TrtforgeError as e:
        return _failed(STATUS.format(name), e.one_line(), "pipeline")


def _sidecar_index(folder: Path) -> dict | None:
    """An index of a target's folder made of its sidecars (<module>.json naming its files and
    their digests); None when it holds none."""
    modules = {}
    for path in sorted(folder.glob("*.json")):
        try:
            side = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(side, dict) or not SIDECAR_KEYS <= side.keys() or side["module"] != path.stem:
            continue
        files = side["files"] if isinstance(side["files"], dict) else {}
        modules[path.stem] = {
            "sidecar": path.name,
            "files": {**files, path.name: digest_file(path, trust_memo=False)},
            "digests_in": f"its sidecar {path.name}",  # what a digest mismatch names: no index.json here
        }
    if not modules:
        return None
    return {**engines_index.empty(), "modules": modules}


def _target_of(entry: dict) -> str:
    """The target folder an index entry was published in (engines/<target>/<module>.*)."""
    parts = PurePosixPath(entry["sidecar"]).parts
    return parts[0] if len(parts) > 1 else ""


def _select(published: dict, modules: tuple[str, ...], targets: tuple[str, ...], folder: Path) -> list[str]:
    """The index's entries to check: each module named as build names it ('unet') or as the index
    does ('ampere_ada/unet'), on each target named (all when none is)."""
    for t in targets:
        known = sorted({_target_of(e) for e in published.values()} - {""})
        if t not in known:
            near = difflib.get_close_matches(t, known, n=1)
            raise TrtforgeError(
                f"no published engine for target '{t}'",
                where=f"--target {t}",
                hint=f"did you mean '{near[0]}'?" if near else f"{folder} holds targets: {', '.join(known) or 'none'}",
            )
    for name in modules:
        if not any(name in (n, n.rsplit("/", 1)[-1]) for n in published):
            candidates = sorted({*published, *(n.rsplit("/", 1)[-1] for n in published)})
            near = difflib.get_close_matches(name, candidates, n=1)
            raise TrtforgeError(
                f"no published engine for module '{name}'",
                where=f"--module {name}",
                hint=f"did you mean '{near[0]}'?"
                if near
                else f"{folder / engines_index.INDEX} lists: {', '.join(sorted(published)) or 'none'}",
            )
    chosen = [
        n
        for n, e in sorted(published.items())
        if (not modules or any(m in (n, n.rsplit("/", 1)[-1]) for m in modules))
        and (not targets or _target_of(e) in targets)
    ]
    if not chosen and (modules or targets):  # none named: an empty index is judged by the caller
        raise TrtforgeError(
            f"no published engine of {', '.join(modules)} on target {', '.join(targets)}",
            where=f"--module {' --module '.join(modules)} --target {' --target '.join(targets)}",
            hint=f"{folder} holds: {', '.join(sorted(published))}",
        )
    return chosen


def _timed(check: Callable[..., dict], *args: object) -> dict:
    t0 = time.perf_counter()
    result = check(*args)
    return {**result, "seconds": round(time.perf_counter() - t0, 3)}


def junit_xml(results: list[dict]) -> str:
    from trtforge.driver.report.junit import Case
    from trtforge.driver.report.junit import junit_xml as write

    return write(
        [Case(r["module"], r["status"], r.get("seconds", 0.0), r.get("reason", "")) for r in results],
        classname="trtforge.verify",
    )
