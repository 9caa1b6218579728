"""The published bundle in polygraphy's own JSON format (issue 13): a real `polygraphy run
--load-inputs / --load-outputs` reads it and compares every input set (example, random, named).
The engines here are TensorRT-RTX CPU builds that cannot run on this machine, so polygraphy runs
the published module's precision-stage ONNX with ONNX Runtime, the same graph the engine was built
from; on the target, the README's command runs the engine itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from trtforge.verify.polygraphy_bundle import INPUTS_JSON, REFERENCE_JSON

pytestmark = pytest.mark.slow  # real exports and engine builds

POLYGRAPHY = str(Path(sys.executable).parent / "polygraphy")

MODEL = """
import torch
from torch import nn


def make(seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
"""

MANIFEST = """
[defaults]
precision.rules = []
verify = { random_inputs = 1, input_sets = ["samples/*.npz"] }

[modules.a]
factory = "mlp:make"
inputs.x = { shape = [2, 8], dist = "normal", std = 0.5 }

[modules.b]
factory = "mlp:make"
factory_args = { seed = 1 }
inputs.x = { shape = [2, 8], dist = "normal", std = 0.5 }
"""


def _polygraphy(onnx: Path, folder: Path, inputs_of: str, reference_of: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            POLYGRAPHY,
            "run",
            str(onnx),
            "--onnxrt",
            "--load-inputs",
            str(folder / f"{inputs_of}.polygraphy-inputs.json"),
            "--load-outputs",
            str(folder / f"{reference_of}.polygraphy-reference.json"),
            "--atol",
            "0.01",
            "--rtol",
            "0.01",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_polygraphy_run_reads_the_published_bundle(tmp_path):
    (tmp_path / "mlp.py").write_text(MODEL)
    (tmp_path / "engines.toml").write_text(MANIFEST)
    (tmp_path / "samples").mkdir()
    np.savez(tmp_path / "samples" / "ones.npz", x=np.ones((2, 8), np.float16))
    r = run_cli("build", "--json", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    modules = {m["name"]: m for m in json.loads(r.stdout)["modules"]}
    (folder,) = [p for p in (tmp_path / "engines").iterdir() if p.is_dir()]
    side = json.loads((folder / "a.json").read_text())
    assert {"a.polygraphy-inputs.json", "a.polygraphy-reference.json"} <= set(side["files"])
    onnx = tmp_path / ".trtforge-cache" / "views" / modules["a"]["stages"]["precision_rules"]["key"] / "model.onnx"

    ok = _polygraphy(onnx, folder, "a", "a")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    # example + random 1 + samples/ones.npz, each an iteration polygraphy compared
    assert "Passed: 3/3 iterations" in ok.stdout + ok.stderr, ok.stdout[-3000:]
    # the comparison is real: module b's reference (other weights) fails against a's graph
    bad = _polygraphy(onnx, folder, "a", "b")
    assert bad.returncode != 0 and "FAILED" in bad.stdout + bad.stderr, bad.stdout[-3000:]


WRITE_ALONE = """
import sys
from pathlib import Path
import numpy as np
from trtforge.verify.polygraphy_bundle import INPUTS_JSON, REFERENCE_JSON, write_bundle

sets = [("example", {"x": np.ones((2, 8), np.float16)}, {"y": np.zeros((2, 4), np.float32)})]
write_bundle(sets, "tensorrt-rtx", Path(sys.argv[1]))
print("torch" in sys.modules)
"""


def test_writing_the_bundle_does_not_import_torch(tmp_path):
    """The verify stage runs without torch; polygraphy's encoder would import it (1.5 s a module
    on 2 cores) to register a torch encoder the bundle never needs. Its own process: nothing
    imported before."""
    r = subprocess.run([sys.executable, "-c", WRITE_ALONE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr[-2000:]
    from trtforge import backends as be

    be.select(be.RTX)  # polygraphy picks its TensorRT family at import, for this whole worker
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    feeds = load_json(str(tmp_path / INPUTS_JSON))
    assert feeds[0]["x"].shape == (2, 8) and feeds[0]["x"].dtype == np.float16
    ((runner, iterations),) = RunResults.load(str(tmp_path / REFERENCE_JSON)).items()
    assert iterations[0]["y"].shape == (2, 4)
