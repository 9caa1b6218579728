"""Work of the next stage that runs beside the current one (issue 25 item 3): verify's final ONNX
check (the precision graph, FP16-faithful) needs no engine, so it runs while the engine builds.

It is asked for (`--overlap`): off by default, because the two peaks add up. Measured in one
`make bench-big` run (SD1.5 UNet, 2 cores): with it 147.4 s and 6.25 GiB peak, without it 159.8 s
and 5.67 GiB, against the plain path's 107.6 s and 5.58 GiB (1.37x wall and 1.12x peak, against
1.49x and 1.02x). Where asked, whether it runs is decided before the build starts, from the
measured peak RSS of both (the
module's last build and verify records in the cache; on a first build, estimated from the weights
the build reads), against the memory budget every stage runs under (processes/isolate.budget):
never past the memory the machine has. While both run, the watcher stops the check first if
their sum passes the budget, and verify then runs it itself: the overlap is only ever a saving.

Measured on this 2-core machine (SD1.5 UNet, 1.6 GB FP16 weights): the engine build alone 36.5 s,
the FP16-faithful check alone 23.4 s, both at once 48.2 s (11.7 s saved); peak RSS of both at once
5.69 GiB against 5.40 GiB for the build alone (the check's peak falls outside the build's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

from trtforge.driver.context import RunContext
from trtforge.driver.stages import Step
from trtforge.errors import TrtforgeError
from trtforge.manifest import ModuleSpec
from trtforge.processes import isolate
from trtforge.stage import Ahead, StageContext, StageInputs, Upstream

# a first build's estimate from the bytes of weights the build reads (the precision graph's
# outputs): measured on an SD1.5 UNet, build 5.46 GiB and verify 2.30 GiB for 1.6 GiB of weights
BUILD_PER_WEIGHT, CHECK_PER_WEIGHT, BASE = 3.5, 1.5, 512 << 20


@dataclass
class AheadRun:
    """The next stage's ahead work, forked when the current stage really runs (a cache miss)."""

    label: str
    ahead: Ahead
    sctx: StageContext
    beside: isolate.Beside | None = field(default=None)

    def start(self) -> isolate.Beside | None:
        self.beside = isolate.start_beside(
            partial(self.ahead.run, self.sctx), module=self.sctx.module.name, stage=self.label
        )
        return self.beside

    def collect(self) -> dict | None:
        """Its result; None when it never started, was stopped for memory, or failed (the stage
        then does the work itself and reports what goes wrong there)."""
        if self.beside is None:
            return None
        try:
            return isolate.finish_beside(self.beside)
        except (isolate.StageCrashed, TrtforgeError):  # killed, over memory, a user error: met again there
            return None

    def stop(self) -> None:
        if self.beside is not None:
            isolate.stop_beside(self.beside)


@dataclass(frozen=True)
class Around:
    """One stage's overlap with its neighbours: `prepared`, what its own ahead work computed beside
    the stage before (None: it does that work itself); `beside`, the next stage's ahead work,
    started only if this stage really runs."""

    prepared: dict | None = None
    beside: AheadRun | None = None


ALONE = Around()


def plan_ahead(ctx: RunContext, module: ModuleSpec, step: Step, nxt: Step | None, records: dict) -> AheadRun | None:
    """The next stage's ahead work to run beside `step`, where the request and the machine allow."""
    if nxt is None or not ctx.request.overlap or ctx.request.jobs > 1:
        return None
    ahead = nxt.stage.ahead()
    if ahead is None or any(r not in records for r in ahead.reads):
        return None
    if not _room(ctx, module, step.stage.name, nxt.stage.name, records):
        return None
    inputs = StageInputs({d: Upstream(ctx.store.view(records[d]), records[d].meta) for d in ahead.reads})
    sctx = StageContext(module=module, root=ctx.manifest.root, inputs=inputs)
    return AheadRun(f"{nxt.stage.name} (beside {step.stage.name})", ahead, sctx)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _room(ctx: RunContext, module: ModuleSpec, stage: str, nxt: str, records: dict) -> bool:
    """Two cores or more, and the two peaks together within the memory budget."""
    if _cores() < 2:
        return False
    limit = isolate.budget()
    if limit is None:
        return True
    graph = records.get("precision_rules")  # the graph the build reads, weights included
    weights = sum(o.get("size", 0) for o in graph.outputs.values()) if graph is not None else 0
    now = _measured(ctx, module, stage) or int(BUILD_PER_WEIGHT * weights) + BASE
    beside = _measured(ctx, module, nxt) or int(CHECK_PER_WEIGHT * weights) + BASE
    return now + beside <= limit


def _measured(ctx: RunContext, module: ModuleSpec, stage: str) -> int | None:
    """The peak RSS (bytes) of the module's last run of `stage`, from its record in the cache."""
    last = ctx.store.last(module.name, stage)
    record = ctx.store.lookup(last["key"]) if last else None
    peak = record.meta.get("peak_rss_mib") if record is not None else None
    return int(peak) << 20 if isinstance(peak, (int, float)) and peak > 0 else None
