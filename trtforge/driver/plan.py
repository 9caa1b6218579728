"""`trtforge plan`: the build's jobs for a CI system's own matrix, in the order they may run.

A release of many modules x targets is built fastest by the CI system that already runs the fleet:
one job per module for the stages every target shares (export, graph_passes, precision_rules: any
CPU), then one job per module x target (a TensorRT target on its GPU model, a TensorRT-RTX target
on any CPU), then one job that assembles engines/ from the shared cache. Ordering the per-module
job first means each module is exported once (there is no lock across machines).

What the remote (and local) cache already holds is left out: a prepare job whose three records
are there, a module x target job whose release pointer (driver/release.py: computable on any
machine) is there. Planning downloads no artifact: lookups read records only (Store.peek).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

from trtforge.cache import Record, Store
from trtforge.driver import release
from trtforge.driver.context import RunContext
from trtforge.driver.execute import plan_stage
from trtforge.driver.stages import stage_table
from trtforge.errors import TrtforgeError
from trtforge.manifest import Manifest, ModuleSpec
from trtforge.manifest.targets import TargetSpec, for_target

SHARED_UNTIL = "precision_rules"  # the last stage that reads no target


@dataclass(frozen=True)
class Job:
    """One CI job: what it builds, what machine it needs (`cpu`, or `gpu` with the GPU model),
    the command it runs and the jobs that must finish first."""

    id: str
    kind: str  # "prepare" | "build" | "assemble"
    command: tuple[str, ...]
    needs: tuple[str, ...] = ()
    module: str | None = None
    target: str | None = None
    runs_on: str = "cpu"
    gpu: str | None = None

    @property
    def runner(self) -> str:
        """A runner label: `cpu`, or `gpu-<model>` (lower case) for a TensorRT target."""
        return "cpu" if self.runs_on == "cpu" else f"gpu-{(self.gpu or 'any').lower()}"

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "module": self.module,
            "target": self.target,
            "runs_on": self.runs_on,
            "gpu": self.gpu,
            "runner": self.runner,
            "needs": list(self.needs),
            "command": shlex.join(self.command),
            "argv": list(self.command),
        }


@dataclass
class BuildPlan:
    jobs: list[Job]
    cached: list[str] = field(default_factory=list)  # jobs left out: the cache holds their results

    def as_json(self) -> dict:
        return {
            "ok": True,
            "exit_code": 0,
            "jobs": [j.as_json() for j in self.jobs],
            "cached": self.cached,
        }

    def render(self) -> str:
        lines = []
        for j in self.jobs:
            what = j.runner if j.runs_on == "cpu" else f"gpu {j.gpu}"
            after = f"  (after {', '.join(j.needs)})" if j.needs else ""
            lines.append(f"{j.id:<28} {what:<10} {shlex.join(j.command)}{after}")
        if self.cached:
            lines.append(f"cached (left out): {', '.join(self.cached)}")
        return "\n".join(lines)

    def github(self) -> str:
        """Lines for $GITHUB_OUTPUT: `prepare`, `build` (each a matrix: {"include": [...]}, with
        an empty-safe `has_prepare`/`has_build`) and `assemble` (its command)."""
        out = []
        for kind in ("prepare", "build"):
            rows = [
                {
                    "id": j.id,
                    "module": j.module,
                    "target": j.target,
                    "runner": j.runner,
                    "command": shlex.join(j.command),
                }
                for j in self.jobs
                if j.kind == kind
            ]
            out.append(f"{kind}={json.dumps({'include': rows}, separators=(',', ':'))}")
            out.append(f"has_{kind}={'true' if rows else 'false'}")
        (assemble,) = [j for j in self.jobs if j.kind == "assemble"]
        out.append(f"assemble={shlex.join(assemble.command)}")
        return "\n".join(out)

    def gitlab(self, template: str = ".trtforge", include: str | None = None) -> dict:
        """A GitLab CI child pipeline (JSON is YAML): one job per planned job, `needs` as planned,
        each extending `template` (image, before_script, variables: the user's, from the file
        `include` names in the repository) and tagged with its runner label."""
        doc: dict = {
            **({"include": [{"local": include}]} if include else {}),
            "stages": ["prepare", "build", "assemble"],
        }
        for j in self.jobs:
            job: dict = {
                "extends": template,
                "stage": j.kind,
                "tags": [j.runner],
                "script": [shlex.join(j.command)],
                "needs": list(j.needs),
            }
            if j.kind == "assemble":
                job["artifacts"] = {"paths": ["engines/"]}
            doc[j.id] = job
        return doc


def _records_until(store: Store, manifest: Manifest, module: ModuleSpec, backend: str | None) -> dict[str, Record]:
    """The records of the target-independent stages the cache already holds, in order (stops at
    the first one missing: a later key needs its record's digests)."""
    records: dict[str, Record] = {}
    for stage, reads in stage_table(backend, SHARED_UNTIL):
        try:
            found = plan_stage(store, stage, module, manifest.root, {d: records[d] for d in reads}).record
        except TrtforgeError:
            break  # the job that runs the stage reports it
        if found is None:
            break
        records[stage.name] = found
    return records


def _target_done(
    store: Store,
    manifest: Manifest,
    module: ModuleSpec,
    target: TargetSpec | None,
    records: dict[str, Record],
    backend: str | None,
) -> bool:
    if SHARED_UNTIL not in records:
        return False
    if target is None:  # no [targets]: the default target's keys, computed here as a build would
        done = dict(records)
        for stage, reads in stage_table(backend)[len(records) :]:
            try:
                found = plan_stage(store, stage, module, manifest.root, {d: done[d] for d in reads}).record
            except TrtforgeError:
                return False  # e.g. the backend is not installed here: the job decides
            if found is None:
                return False
            done[stage.name] = found
        return True
    key, _ = release.pointer(for_target(module, target), target, records)
    pointer = store.lookup(key)
    return pointer is not None and all(store.lookup(pointer.meta.get(s, "")) is not None for s in release.ASSEMBLED)


def plan(
    ctx: RunContext, modules: list[ModuleSpec], head: tuple[str, ...], extra: tuple[str, ...] = ("--require-remote",)
) -> BuildPlan:
    """The jobs that build `modules` for the request's targets (every declared one; a manifest
    without targets: one job per module for its backend), what the cache holds left out, then
    assembly. `head`: the command a job starts with (`trtforge build engines.toml`); `extra`: the
    options every job adds."""
    store, manifest, backend, targets = ctx.store, ctx.manifest, ctx.request.backend, ctx.targets
    jobs: list[Job] = []
    cached: list[str] = []
    builds: list[str] = []
    for module in modules:
        records = _records_until(store, manifest, module, backend)
        prep = f"prepare-{module.name}"
        prepared = SHARED_UNTIL in records
        per_target = []
        for target in targets or (None,):
            tid = f"build-{target.name}-{module.name}" if target is not None else f"build-{module.name}"
            builds.append(tid)
            if _target_done(store, manifest, module, target, records, backend):
                cached.append(tid)
                continue
            backend_of = (target.backend if target is not None else None) or backend or module.build.backend
            gpu = target.gpu if target is not None and backend_of == "tensorrt" else None
            per_target.append(
                Job(
                    tid,
                    "build",
                    (
                        *head,
                        "--module",
                        module.name,
                        *(("--target", target.name, "--require-target") if target is not None else ()),
                        *extra,
                    ),
                    needs=() if prepared or not targets else (prep,),
                    module=module.name,
                    target=None if target is None else target.name,
                    runs_on="gpu" if backend_of == "tensorrt" else "cpu",
                    gpu=gpu,
                )
            )
        if not targets:
            pass  # one job per module runs every stage: nothing to share between targets
        elif prepared:
            cached.append(prep)
        elif per_target:
            jobs.append(
                Job(
                    prep,
                    "prepare",
                    (*head, "--module", module.name, "--until", SHARED_UNTIL, *extra),
                    module=module.name,
                )
            )
        else:
            cached.append(prep)
        jobs.extend(per_target)
    needs = tuple(j.id for j in jobs if j.kind == "build")
    assemble = Job("assemble", "assemble", (*head, "--from-cache", "--remote-read-only"), needs=needs)
    order = [j for j in jobs if j.kind == "prepare"] + [j for j in jobs if j.kind == "build"] + [assemble]
    return BuildPlan(order, cached)
