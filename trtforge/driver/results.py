"""What a build of one module produced: a status per stage, the cache records, the error."""

from __future__ import annotations

from dataclasses import dataclass, field

from trtforge.cache import Record
from trtforge.driver.stages import STAGE_NAMES
from trtforge.errors import TrtforgeError


@dataclass
class StageStatus:
    state: str = "not run"  # ok | cached | failed | not run
    reason: str = ""
    seconds: float = 0.0
    key: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class ModuleResult:
    name: str
    stages: dict[str, StageStatus] = field(default_factory=lambda: {s: StageStatus() for s in STAGE_NAMES})
    error: TrtforgeError | None = None
    records: dict[str, Record] = field(default_factory=dict, repr=False)  # the stages' metas repeat them
    published: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    remote: dict = field(default_factory=dict)  # remote cache: stages fetched/uploaded, its failure
    target: str | None = None  # a [targets.NAME] target (name is then "<target>/<module>")
    skipped: str = ""  # "needs <GPU>": a target this machine cannot build, nothing run or published
    # named by a [pipelines.NAME]: verified, but published only once its pipelines pass (pipelines/drive.py)
    deferred: bool = False

    @property
    def module(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def ok(self) -> bool:
        return self.error is None

    def fail(self, stage: str, error: TrtforgeError, reason: str | None = None) -> None:
        """Record `error` as the module's failure at `stage`; every later stage is 'not run'."""
        self.error = error
        self.stages[stage].state, self.stages[stage].reason = "failed", reason or error.one_line()
        for name in STAGE_NAMES[STAGE_NAMES.index(stage) + 1 :]:
            self.stages[name] = StageStatus("not run", f"{stage} failed")
