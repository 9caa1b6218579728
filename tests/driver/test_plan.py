"""`trtforge plan`'s shapes, in process, on a manifest whose stages nothing has built: the job
order and needs, TensorRT targets on their GPU and TensorRT-RTX ones on a CPU, the GitHub Actions
lines and the GitLab child pipeline. (The jobs run for real: tests/farm/test_plan.py.)"""

from __future__ import annotations

import json

import pytest

from trtforge.driver.api import plan
from trtforge.errors import TrtforgeError

MANIFEST = """\
[defaults]
precision.rules = []

[modules.enc]
factory = "mods:make"
inputs.x = { shape = [2, 8], dtype = "float16" }
outputs = ["y"]

[targets.consumer]
backend = "tensorrt-rtx"
rtx_compute_capabilities = ["8.6"]

[targets.h100]
backend = "tensorrt"
gpu = "H100"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("TRTFORGE_REMOTE_CACHE", raising=False)
    (tmp_path / "mods.py").write_text("def make():\n    return None\n")
    (tmp_path / "engines.toml").write_text(MANIFEST)
    return tmp_path


def test_jobs_in_order_with_what_each_needs(project):
    p = plan(project / "engines.toml", manifest_arg="engines.toml", trtforge=".venv/bin/trtforge")
    jobs = {j.id: j for j in p.jobs}
    assert [j.id for j in p.jobs] == ["prepare-enc", "build-consumer-enc", "build-h100-enc", "assemble"]
    assert jobs["prepare-enc"].command == (
        ".venv/bin/trtforge", "build", "engines.toml", "--module", "enc", "--until", "precision_rules",
    )  # fmt: skip
    assert (jobs["build-consumer-enc"].runs_on, jobs["build-consumer-enc"].runner) == ("cpu", "cpu")
    assert (jobs["build-h100-enc"].runs_on, jobs["build-h100-enc"].gpu, jobs["build-h100-enc"].runner) == (
        "gpu",
        "H100",
        "gpu-h100",
    )
    assert jobs["build-h100-enc"].needs == ("prepare-enc",)
    assert jobs["assemble"].needs == ("build-consumer-enc", "build-h100-enc")
    assert "--from-cache" in jobs["assemble"].command and p.cached == []
    doc = p.as_json()
    assert doc["ok"] and doc["jobs"][2]["command"].endswith("--target h100 --require-target")


def test_github_lines_and_gitlab_pipeline(project):
    p = plan(project / "engines.toml", manifest_arg="engines.toml", targets=["h100"])
    lines = dict(line.split("=", 1) for line in p.github().splitlines())
    assert json.loads(lines["build"])["include"][0] == {
        "id": "build-h100-enc",
        "module": "enc",
        "target": "h100",
        "runner": "gpu-h100",
        "command": "trtforge build engines.toml --module enc --target h100 --require-target",
    }
    assert (
        lines["has_prepare"] == "true"
        and lines["assemble"] == "trtforge build engines.toml --from-cache --remote-read-only"
    )
    ci = p.gitlab(include=".gitlab/trtforge-job.yml")
    assert ci["include"] == [{"local": ".gitlab/trtforge-job.yml"}]
    assert ci["build-h100-enc"]["needs"] == ["prepare-enc"] and ci["build-h100-enc"]["tags"] == ["gpu-h100"]
    assert ci["assemble"]["artifacts"] == {"paths": ["engines/"]} and ci["assemble"]["stage"] == "assemble"


def test_unknown_target_is_a_user_error(project):
    with pytest.raises(TrtforgeError, match="no target 'a100'"):
        plan(project / "engines.toml", targets=["a100"])


def test_until_takes_only_the_shared_stages_without_a_target(project):
    from trtforge import build

    with pytest.raises(TrtforgeError, match="--until precision_rules: only the stages every target shares"):
        build(project / "engines.toml", until="precision_rules", targets=["consumer"])
    with pytest.raises(TrtforgeError, match="--until build"):
        build(project / "engines.toml", until="build")
