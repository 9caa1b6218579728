"""The driver's module lifecycle on fake stages (in-process, no torch or TensorRT): order, cache
hits, a failing stage, the verify verdict, --force --stage, --require-engine-check. Each fake
stage runs in the driver's real child process and writes a real cache record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from trtforge.cache import Store
from trtforge.driver.lifecycle import build_module
from trtforge.driver.stages import STAGE_NAMES, Step
from trtforge.errors import PassError, VerifyError
from trtforge.manifest import parse_manifest

MANIFEST = '[modules.m]\nfactory = "nowhere:make"\ninputs.x = { shape = [1, 2] }\n'


@dataclass(frozen=True)
class FakeStage:
    name: str
    log: str  # a file each run appends its name to (the run happens in a child process)
    fail: bool = False
    verdict: tuple = (True, "ok")  # verify only: (passed, engine status)
    version: str = "fake-1"

    def key_material(self, module, root) -> dict:
        return {"module": module.name, "fail": self.fail, "verdict": list(self.verdict)}

    def run(self, ctx, workdir: Path) -> dict:
        with open(self.log, "a") as f:
            f.write(self.name + "\n")
        if self.fail:
            raise PassError("the fake pass failed", where=f"modules.{ctx.module.name}.passes")
        (workdir / "out.txt").write_text(f"{self.name} read {sorted(ctx.inputs)}")
        if self.name != "verify":
            return {"stage": self.name}
        passed, engine = self.verdict
        checks = {
            "graph_passes": {"status": "ok" if passed else "failed", "reason": "3% outside"},
            "engine": {"status": engine, "reason": "no GPU here" if engine != "ok" else ""},
        }
        return {"checks": checks, "chain": list(checks), "passed": passed, "blame": None if passed else "graph_passes"}


def table(log: Path, fail: str | None = None, verdict=(True, "ok")) -> tuple[Step, ...]:
    reads = {
        "export": (),
        "graph_passes": ("export",),
        "precision_rules": ("export", "graph_passes"),
        "build": ("precision_rules",),
        "verify": ("export", "graph_passes", "precision_rules", "build"),
    }
    return tuple(
        Step(FakeStage(n, str(log), fail=n == fail, verdict=verdict if n == "verify" else (True, "ok")), reads[n])
        for n in STAGE_NAMES
    )


@pytest.fixture
def setup(tmp_path):
    manifest = parse_manifest(MANIFEST, tmp_path / "engines.toml")
    return Store(tmp_path / "cache"), manifest, manifest.modules[0], tmp_path / "runs.log"


def runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_stages_run_in_order_then_hit_the_cache(setup):
    store, manifest, module, log = setup
    first = build_module(store, manifest, module, table=table(log))
    assert first.ok and runs(log) == list(STAGE_NAMES)
    assert [st.state for st in first.stages.values()] == ["ok"] * 5
    assert (store.view(first.records["verify"]) / "out.txt").read_text().startswith("verify read ['build'")
    second = build_module(store, manifest, module, table=table(log))
    assert second.ok and runs(log) == list(STAGE_NAMES)  # nothing ran again
    assert [st.state for st in second.stages.values()] == ["cached"] * 5


def test_a_failing_stage_stops_the_module_and_names_itself(setup):
    store, manifest, module, log = setup
    r = build_module(store, manifest, module, table=table(log, fail="graph_passes"))
    assert isinstance(r.error, PassError) and r.error.module == "m"
    assert [r.stages[s].state for s in STAGE_NAMES] == ["ok", "failed", "not run", "not run", "not run"]
    assert r.stages["build"].reason == "graph_passes failed" and runs(log) == ["export", "graph_passes"]


def test_a_failed_verdict_is_a_verify_error_blaming_the_stage(setup):
    store, manifest, module, log = setup
    r = build_module(store, manifest, module, table=table(log, verdict=(False, "ok")))
    assert isinstance(r.error, VerifyError) and r.error.exit_code == 3
    assert r.stages["verify"].state == "failed" and r.stages["verify"].reason.startswith("failed at graph_passes")


def test_force_from_a_stage_reruns_it_and_every_later_one(setup):
    store, manifest, module, log = setup
    build_module(store, manifest, module, table=table(log))
    r = build_module(store, manifest, module, force_from="precision_rules", table=table(log))
    assert runs(log)[5:] == ["precision_rules", "build", "verify"]
    assert [r.stages[s].state for s in STAGE_NAMES] == ["cached", "cached", "ok", "ok", "ok"]


def test_require_engine_check_fails_an_engine_that_did_not_run(setup):
    store, manifest, module, log = setup
    lenient = build_module(store, manifest, module, table=table(log, verdict=(True, "not run")))
    assert lenient.ok
    strict = build_module(
        store, manifest, module, require_engine_check=True, table=table(log, verdict=(True, "not run"))
    )
    assert isinstance(strict.error, VerifyError) and "no GPU here" in strict.error.one_line()
    assert strict.stages["verify"].reason.startswith("engine check required")
