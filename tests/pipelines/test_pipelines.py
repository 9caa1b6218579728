"""[pipelines.NAME]: modules composed by a runner, checked end to end against the FP32 pipeline.

The slow test builds a real project (two toy modules, real export, real TensorRT-RTX CPU builds,
the real FP16-faithful evaluator) and walks it through the verdicts: compounding error caught and
blamed, a broken reference refused, a passing pipeline published and re-checked on the target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cache.test_noop import _PROBE, _snapshot
from tests.conftest import REPO, run_cli
from trtforge.errors import ManifestError, PipelineError
from trtforge.manifest import parse_manifest

HERE = Path(__file__).resolve().parent
MODULES = """\
[defaults]
precision.rules = []

[modules.unet]
factory = "toy:make_logistic"
inputs.x = { shape = [1, 3, 8, 8], dtype = "float16", range = [0.1, 0.9] }
outputs = ["y"]

[modules.decode]
factory = "toy:make_affine"
inputs.x = { shape = [1, 3, 8, 8], dtype = "float16", range = [0.0, 1.0] }
outputs = ["image"]
"""
PIPELINE = """
[pipelines.chaos]
modules = ["unet", "decode"]
runner = "runners.chaos:{runner}"
runner_args = {{ {args} }}
inputs.x0 = {{ shape = [1, 3, 8, 8], dtype = "float32", range = [0.1, 0.9] }}
outputs.image = {{ metric = "psnr", min_psnr = 30 }}
"""


def write(root: Path, runner: str = "iterate", args: str = "steps = 24", manifest: str | None = None) -> Path:
    """The toy project: toy.py, the runners as runners/chaos.py, and engines.toml (`manifest`, or
    the two modules and the chaos pipeline with this runner and these arguments)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "toy.py", root / "toy.py")
    (root / "runners").mkdir(exist_ok=True)
    (root / "runners" / "__init__.py").write_text("")
    shutil.copy(HERE / "toy_runners.py", root / "runners" / "chaos.py")
    (root / "engines.toml").write_text(manifest or MODULES + PIPELINE.format(runner=runner, args=args))
    return root


def parse(extra: str) -> object:
    return parse_manifest(MODULES + extra, Path("/p/engines.toml"))


# ------------------------------------------------------------------------------- the manifest
@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('modules = ["unet", "vae"]\nrunner = "toy:iterate"\noutputs.image = {}', r"modules\[1\]: no module 'vae'"),
        ('modules = ["unet"]\nrunner = "toy"\noutputs.image = {}', r"runner: 'toy' is not 'package.module:callable'"),
        ('modules = ["unet"]\nrunner = "toy:f"\noutputs.image = { metric = "ssim" }', r"metric: 'ssim' is not one of"),
        (
            'modules = ["unet"]\nrunner = "toy:f"\noutputs.tokens = { metric = "sequence", min_psnr = 3 }',
            r"outputs.tokens.min_psnr: unknown key",
        ),
        (
            'modules = ["unet"]\nrunner = "toy:f"\nrunnr_args = {}\noutputs.a = {}',
            r"unknown key 'runnr_args'.*runner_args",
        ),
        ('modules = ["unet"]\nrunner = "toy:f"', r"chaos.outputs: missing required key 'outputs'"),
        (
            'modules = ["unet"]\nrunner = "toy:f"\nrunner_args = { x0 = 1 }\ninputs.x0 = { shape = [2] }\noutputs.a = {}',
            r"'x0' is both an input and a runner argument",
        ),
        (
            'modules = ["unet"]\nrunner = "toy:f"\ninputs.x0 = { shape = [2], dist = "normal", range = [0, 1] }\noutputs.a = {}',
            r"inputs.x0.range: range and dist are both given",
        ),
    ],
)
def test_a_wrong_pipeline_table_is_one_line_naming_the_field(table, message):
    with pytest.raises(ManifestError, match=message) as e:
        parse("[pipelines.chaos]\n" + table)
    assert "\n" not in e.value.one_line() and "pipelines.chaos" in e.value.one_line()


def test_a_pipeline_table_resolves_every_default():
    m = parse(
        '[pipelines.p]\nmodules = ["unet"]\nrunner = "toy:f"\noutputs.a = {}\noutputs.t = { metric = "sequence" }'
    )
    (p,) = m.pipelines
    assert p.outputs["a"] == {"atol": 0.01, "rtol": 0.01, "max_outside": 0.001, "min_cosine": 0.999}
    assert p.outputs["t"] == {"metric": "sequence", "min_match": 1.0}
    assert (
        p.as_key()
        == parse(
            '[pipelines.p]\nmodules = ["unet"]\nrunner = "toy:f"\noutputs.t = { metric = "sequence", min_match = 1.0 }\noutputs.a = { atol = 0.01 }'
        )
        .pipelines[0]
        .as_key()
    )


# ----------------------------------------------------------------------------- the harness
def test_a_call_outside_the_modules_shapes_is_one_line_naming_module_input_and_shape(tmp_path):
    """The real FP32 module behind a handle: a batch of 2 where the engine takes 1 is refused
    before anything runs."""
    import torch

    from trtforge.pipelines.harness import ModuleHandle, PipelineError, Recorder, Signature, TorchModule

    manifest = parse_manifest(
        write(tmp_path / "p").joinpath("engines.toml").read_text(), tmp_path / "p" / "engines.toml"
    )
    spec = manifest.module("unet")
    handle = ModuleHandle("chaos", Signature.of(spec), TorchModule(spec, manifest.root), Recorder())
    out = handle(x=torch.full((1, 3, 8, 8), 0.5))
    assert torch.allclose(out.y, torch.full((1, 3, 8, 8), 3.9 * 0.25))
    with pytest.raises(PipelineError) as e:
        handle(x=torch.zeros(2, 3, 8, 8))
    line = e.value.one_line()
    assert "module 'unet'" in line and "input 'x'" in line and "[2, 3, 8, 8]" in line and "pipelines.chaos" in line
    with pytest.raises(PipelineError, match="unknown input 'sample'; its inputs: x"):
        handle(sample=torch.zeros(1, 3, 8, 8))


def test_a_left_padded_batch_generates_what_each_prompt_alone_generates():
    """The example LM's runner on its FP32 modules: row 1 of a batch, left-padded by 3, decodes
    the same 8 tokens as its 5-token prompt alone (positions count real tokens only)."""
    import dataclasses

    import torch

    from examples.tiny_lm import greedy
    from trtforge.manifest import load_manifest
    from trtforge.pipelines.harness import ModuleHandle, Modules, Recorder, Signature, TorchModule

    manifest = load_manifest(HERE.parent.parent / "engines.toml")

    def modules(batch: int, prompt: int) -> Modules:
        handles = {}
        for name, length in (("lm_prefill", prompt), ("lm_decode", prompt + 7)):
            spec = manifest.module(name)
            spec = dataclasses.replace(
                spec, inputs=tuple(dataclasses.replace(i, shape=(batch, length)) for i in spec.inputs)
            )
            handles[name] = ModuleHandle("greedy", Signature.of(spec), TorchModule(spec, manifest.root), Recorder())
        return Modules(handles)

    ids = torch.randint(1, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, :3] = 0
    ids[1, :3] = 0
    batched = greedy(modules(2, 8), ids, mask)["tokens"]
    alone = greedy(modules(1, 5), ids[1:, 3:], torch.ones(1, 5, dtype=torch.int64))["tokens"]
    assert batched.shape == (2, 8)
    assert torch.equal(batched[1], alone[0]), (batched, alone)


VARY = {"x0": np.linspace(0.1, 0.9, 6, dtype=np.float32).reshape(2, 3)}


def test_a_broken_reference_is_named_for_what_is_wrong():
    """The modules' rule (verify/valid.py) for what a user receives: tokens and images judged too."""
    from trtforge.pipelines.verdict import check_reference
    from trtforge.verify.valid import reference_problem

    def why(value, inputs=VARY):
        return reference_problem(np.asarray(value), None, inputs, False, product=True)

    with pytest.raises(PipelineError) as e:
        check_reference("chaos", {"image": np.zeros((1, 3, 4, 4), np.float32)}, VARY, {})
    assert e.value.one_line().startswith(
        "pipelines.chaos: the reference run (every module FP32 PyTorch) is broken: output 'image': "
        "every one of its 48 values is 0 although the inputs vary"
    )
    img = np.random.default_rng(0).random((2, 3, 4, 4)).astype(np.float32)
    img[1] = 0.0
    assert "image 1 is a single colour" in why(img)
    assert "NaN/Inf" in why(np.array([1.0, np.nan], np.float32))
    assert "all 2 rows of its [2, 3] are identical" in why(np.array([[1, 2, 3], [1, 2, 3]]))
    assert why(np.array([[1, 2, 3], [1, 2, 4]])) is None
    assert "2 items (axis 0) are identical" in why(np.stack([img[0], img[0]]))
    assert "empty" in why(np.zeros((2, 0), np.int64))
    # a module's integer outputs are not judged (argmax ids); nor are the rows of a tiled prompt
    assert reference_problem(np.array([[1, 2, 3], [1, 2, 3]]), None, VARY, False) is None
    assert why(np.array([[1, 2, 3], [1, 2, 3]]), {"ids": np.tile(np.arange(4), (2, 1))}) is None


# ------------------------------------------------------------------------- a real project
def _report(root: Path) -> dict:
    return json.loads((root / "engines" / "report.json").read_text())


@pytest.mark.slow
def test_compounding_fp16_error_is_caught_blamed_refused_and_published_when_fixed(tmp_path):
    root = write(tmp_path / "p")
    # 1. each call within module tolerance, the image after 24 steps not: exit 3, the UNet blamed
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "pipeline 'chaos' failed: image: psnr" in r.stderr and "the crossover blames module 'unet'" in r.stderr
    rep = _report(root)
    (pipe,) = rep["pipelines"]
    assert pipe["blame"] == "unet" and pipe["state"] == "failed"
    assert pipe["crossover"]["decode"]["passed"] and not pipe["crossover"]["unet"]["passed"]
    for m in rep["modules"]:  # the modules' own checks passed; the pipeline withdrew them
        assert m["stages"]["verify"]["meta"]["passed"] is True
        assert "pipeline 'chaos' failed" in m["stages"]["verify"]["reason"]
    errors = [c["outputs"]["y"]["rel_l2"] for c in pipe["series"]["unet"]]
    assert len(errors) == 24 and errors[0] < 1e-3 and errors[-1] > 0.1  # the error grows step by step
    index = root / "engines" / "index.json"  # held back, never published: no engine, no index
    assert not index.exists() or json.loads(index.read_text())["modules"] == {}
    assert not list((root / "engines").rglob("*.engine"))
    md = (root / "engines" / "REPORT.md").read_text()
    assert "blames module **unet**" in md and "| call | unet | decode |" in md or "| call | decode | unet |" in md
    assert "<polyline" in (root / "engines" / "report.html").read_text()

    # 2. a broken reference (the FP32 pipeline's image is all black): exit 2, the pipeline named
    write(root, args="steps = 4, gain = 0.0")
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 2, r.stderr[-3000:]
    assert (
        "pipelines.chaos: the reference run (every module FP32 PyTorch) is broken: output 'image': every one of"
        in r.stderr
    )

    # 3. a call at a shape the engine does not take: one line naming module, input and shape
    write(root, runner="iterate_wrong_shape", args="steps = 2")
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 2 and "module 'unet': input 'x' called at shape [2, 3, 8, 8]" in r.stderr, r.stderr[-3000:]

    # 4. four steps stay within PSNR 30: published, inputs and reference beside the engines
    write(root, args="steps = 4")
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    index = json.loads((root / "engines" / "index.json").read_text())
    files = index["pipelines"]["chaos"]["files"]
    assert set(files) == {"pipelines/chaos/inputs.npz", "pipelines/chaos/reference.npz", "pipelines/chaos.json"}
    assert set(index["modules"]) == {"unet", "decode"}
    assert "pipelines/chaos/inputs.npz" in r.stdout + json.dumps(_report(root)["pipelines"][0]["published"])
    # nothing changed: the verdict comes from the cache (no torch, nothing written), explain says so
    r = run_cli("build", "engines.toml", cwd=root)
    assert r.returncode == 0 and _report(root)["pipelines"][0]["state"] == "cached"
    before = _snapshot(root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert json.loads(probe.stdout.strip().splitlines()[-1])["heavy"] == [], probe.stdout + probe.stderr
    assert _snapshot(root) == before
    r = run_cli("explain", "engines.toml", cwd=root)
    assert "pipelines/chaos pipeline: up to date" in r.stdout, r.stdout
    runner = root / "runners" / "chaos.py"
    runner.write_text(runner.read_text() + "\n# the runner's code changed\n")
    r = run_cli("explain", "engines.toml", cwd=root)
    assert "pipelines/chaos pipeline: will rerun; changed: runner_code.runners/chaos.py" in r.stdout, r.stdout
    assert "unet export: up to date" in r.stdout, r.stdout  # the modules' keys do not cover the runner
    # a partial build re-checks the pipeline with the other module as the cache holds it
    r = run_cli("build", "engines.toml", "--module", "unet", cwd=root)
    assert r.returncode == 0 and "pipeline chaos: ok" in r.stdout, r.stdout + r.stderr
    assert set(json.loads((root / "engines" / "index.json").read_text())["modules"]) == {"unet", "decode"}
    # ... and holds its modules back when another one is not up to date (it builds nothing else)
    toml = root / "engines.toml"
    toml.write_text(toml.read_text().replace('"toy:make_affine"', '"toy:make_affine"\nfactory_args = { scale = 2.0 }'))
    r = run_cli("build", "engines.toml", "--module", "unet", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "module 'decode' is not built and up to date" in r.stdout, r.stdout
    assert set(json.loads((root / "engines" / "index.json").read_text())["modules"]) == {"decode"}
    unet = next(m for m in _report(root)["modules"] if m["name"] == "unet")
    assert any("not published: pipeline 'chaos' did not pass" in n for n in unet["notes"]), unet["notes"]
    write(root, args="steps = 4")
    assert run_cli("build", "engines.toml", cwd=root).returncode == 0
    # on the target: the pipeline is re-run with the engines where they can run; here it says why not
    r = run_cli("verify", "engines", cwd=root)
    assert "pipelines/chaos: not run: engine not run here" in r.stdout, r.stdout + r.stderr


def test_the_check_is_keyed_on_module_keys_runner_code_args_and_input_data(tmp_path):
    from trtforge.cache import key_of
    from trtforge.pipelines.keys import key_document

    root = write(tmp_path / "p")
    np.save(root / "x0.npy", np.full((1, 3, 8, 8), 0.5, np.float32))
    table = PIPELINE.format(runner="iterate", args="steps = 4").replace(
        "range = [0.1, 0.9] }\noutputs", 'file = "x0.npy" }\noutputs'
    )

    def key(table: str = table, records: dict | None = None) -> str:
        (root / "engines.toml").write_text(MODULES + table)
        manifest = parse_manifest((root / "engines.toml").read_text(), root / "engines.toml")
        return key_of(key_document(manifest.pipelines[0], root, records or {"unet": {"build": "a"}}))

    assert 'file = "x0.npy"' in table
    base = key()
    assert key() == base  # same inputs, same key
    assert key(records={"unet": {"build": "b"}}) != base  # a module's engine changed
    assert key(table.replace("steps = 4", "steps = 5")) != base  # the runner's arguments
    np.save(root / "x0.npy", np.full((1, 3, 8, 8), 0.25, np.float32))
    assert key() != base  # an input file's content
    after = key()
    (root / "runners" / "chaos.py").write_text((root / "runners" / "chaos.py").read_text() + "\n# edited\n")
    assert key() != after  # the runner's code
