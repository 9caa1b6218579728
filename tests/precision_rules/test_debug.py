"""`trtforge debug precision` finds the hostile block's island by itself, and the rule it prints
makes the module pass a real build."""

from __future__ import annotations

import re
import shutil

from tests.conftest import REPO, run_cli

MANIFEST = """
[modules.hostile]
factory = "examples.hostile_attention:make_hostile"
factory_args = {{ depth = 4, hostile = [1, 3] }}
inputs.tokens = {{ shape = [1, 16, 32], dtype = "float16" }}
outputs = ["pooled", "tokens_out"]
precision.rules = {rules}
"""


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


def test_debug_precision_on_a_healthy_module_says_so(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "engines.toml").write_text(MANIFEST.format(rules="[]").replace("hostile = [1, 3]", "hostile = []"))
    out = run_cli("debug", "precision", "hostile", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no FP32 island needed" in out.stdout
