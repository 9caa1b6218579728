"""`trtforge debug precision` finds the hostile block's island by itself, and the rule it prints
makes the module pass a real build."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import REPO, run_cli

MANIFEST = """
[modules.hostile]
factory = "examples.hostile_attention:make_hostile"
factory_args = {{ depth = 4, hostile = [1, 3] }}
inputs.tokens = {{ shape = [1, 16, 32], dtype = "float16" }}
outputs = ["pooled", "tokens_out"]
precision.rules = {rules}
"""


@pytest.mark.slow  # the console script, a real build
def test_debug_precision_finds_the_hostile_islands(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engines.toml").write_text(MANIFEST.format(rules="[]"))
    out = run_cli("debug", "precision", "hostile", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert re.search(r"first diverging tensor 'matmul_2' from MatMul 'node_matmul_2': \d+ of \d+ values NaN/Inf", text)
    # blocks 1 and 3 are hostile; blocks 0 and 2 need nothing (and no LayerNorm island is kept)
    kept = re.findall(r"keep FP32: (\w+) island at '(\w+)'", text)
    assert kept == [("attention_score", "node_softmax_1"), ("attention_score", "node_softmax_3")]
    assert '{ rule = "attention_score", mode = "auto" }' in text
    exact = re.search(r'(\{ rule = "name_pattern".*\})', text).group(1)

    (tmp_path / "engines.toml").write_text(MANIFEST.format(rules=f"[{exact}]"))
    build = run_cli("build", cwd=tmp_path)
    assert build.returncode == 0, build.stderr
    assert list((tmp_path / "engines").rglob("hostile.engine"))


@pytest.mark.slow  # the console script
def test_debug_precision_on_a_healthy_module_says_so(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engines.toml").write_text(MANIFEST.format(rules="[]").replace("hostile = [1, 3]", "hostile = []"))
    out = run_cli("debug", "precision", "hostile", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no FP32 island needed" in out.stdout


def _folders(tmp_path, text, x, ref):
    import onnx

    from tests.precision_rules.helpers import model_of
    from trtforge.data.tensors import save_arrays

    passes, export = tmp_path / "passes", tmp_path / "export"
    passes.mkdir(), export.mkdir()
    onnx.save(model_of(text), str(passes / "model.onnx"))
    save_arrays(export / "caller_inputs.npz", {"x": x})
    save_arrays(export / "caller_reference.npz", {"y": ref})
    return passes, export


TOL = {"atol": 0.01, "rtol": 0.01, "max_outside": 0.0, "min_cosine": 0.999}


def test_debug_finds_an_exp_overflow_island_from_activations(tmp_path):
    import numpy as np

    from tests.precision_rules.helpers import HEADER
    from trtforge.driver.debug import debug_precision

    text = (
        HEADER
        + """
g (float[4] x) => (float[4] y) <float[1] k = {12}> {
    [scale] t = Mul (x, k)
    [exp] ex = Exp (t)
    [sum] tot = ReduceSum <keepdims = 1> (ex)
    [div] y = Div (ex, tot)
}"""
    )
    x = np.array([1, 1, 0.5, 0], np.float16)
    e = np.exp(12.0 * x.astype(np.float64))
    passes, export = _folders(tmp_path, text, x, (e / e.sum()).astype(np.float32))
    result = debug_precision(passes, export, lambda name: TOL)
    assert not result.passes_pure_fp16 and result.fixed
    assert result.first_divergence["node"] == "exp"
    assert set().union(*(i.nodes for i in result.islands)) == {"exp", "sum", "div"}
    assert result.rules == ['{ rule = "name_pattern", nodes = ["div", "exp", "sum"] }']


def test_debug_says_when_no_candidate_island_helps(tmp_path):
    import numpy as np

    from tests.precision_rules.helpers import HEADER
    from trtforge.driver.debug import debug_precision

    # the graph output itself is beyond FP16: no island can fix an FP16 output
    text = (
        HEADER
        + """
g (float[4] x) => (float[4] y) <float[1] k = {1000}> {
    [big] y = Mul (x, k)
}"""
    )
    x = np.full(4, 100, np.float16)  # y = 1e5 > 65504
    passes, export = _folders(tmp_path, text, x, np.full(4, 1e5, np.float32))
    result = debug_precision(passes, export, lambda name: TOL)
    assert not result.fixed and "still fails with all 1 candidate islands FP32" in result.failure
