"""The stage order, written once. Every other part of trtforge (reports, `explain`, `debug`, the
CLI) takes it from here; a stage never imports another stage."""

from __future__ import annotations

from typing import NamedTuple

from trtforge.builder import BuildStage
from trtforge.export import ExportStage
from trtforge.graph_passes import GraphPassesStage
from trtforge.precision_rules import PrecisionStage
from trtforge.stage import Stage
from trtforge.verify import VerifyStage


class Step(NamedTuple):
    """One stage of the pipeline and the upstream stages whose artifacts it reads."""

    stage: Stage
    reads: tuple[str, ...]


def stage_table(backend: str | None = None, until: str | None = None, target=None) -> tuple[Step, ...]:
    """The stages in order; `until` (a stage name) ends the table with that stage (a partial run:
    `debug precision` needs the graph before any island, i.e. until graph_passes); `target`: a
    [targets.NAME] TargetSpec (None: the default target)."""
    build = (
        BuildStage(backend_override=backend)
        if target is None
        # TensorRT-RTX builds ahead of time and times nothing (its documentation deprecates the
        # builder's timing cache): only TensorRT targets keep one
        else BuildStage(
            gpu=target.gpu, target_name=target.name, timing_cache=target.timing_cache and target.backend == "tensorrt"
        )
    )
    table = (
        Step(ExportStage(), ()),
        Step(GraphPassesStage(), ("export",)),
        Step(PrecisionStage(), ("export", "graph_passes")),  # export: example inputs for data rules
        Step(build, ("precision_rules", "export")),  # export: layers before passes
        # verify reads every stage, in this order: the order in which it attributes a failure
        Step(VerifyStage(), ("export", "graph_passes", "precision_rules", "build")),
    )
    if until is None:
        return table
    names = [s.stage.name for s in table]
    if until not in names:
        raise ValueError(f"no stage {until!r}; stages: {', '.join(names)}")
    return table[: names.index(until) + 1]


STAGE_NAMES: tuple[str, ...] = tuple(s.stage.name for s in stage_table())


def later_or_same(name: str, first: str) -> bool:
    """Whether stage `name` comes at or after stage `first` (for --force --stage)."""
    return STAGE_NAMES.index(name) >= STAGE_NAMES.index(first)
