"""Bad modules, passes and rules, through the console script: each fails in its own stage with one
line naming the factory, input, node or pass at fault, and nothing is published. These run the
real exporter (and, for the parser case, a real TensorRT-RTX parse)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_cli
from tests.errors.conftest import build, nothing_lost, one_error_line, write_case

pytestmark = pytest.mark.slow  # the console script on real builds


def module(factory: str, shape="[1, 3, 8, 8]", extra: str = "") -> str:
    return f'[modules.m]\nfactory = "{factory}"\ninputs.x = {{ shape = {shape} }}\n{extra}'


TINY = "bad_models:make_tiny"

# (case, manifest body, the stage at fault, what the one line must contain)
CASES = [
    (
        "factory_import_error",
        module("broken_import:make"),
        "export",
        ["modules.m.factory", "cannot import 'broken_import'", "trtforge_no_such_dependency"],
    ),
    (
        "factory_module_missing",
        module("no_such_models:make"),
        "export",
        ["modules.m.factory", "cannot import 'no_such_models'"],
    ),
    (
        "factory_missing_attribute",
        module("bad_models:make_tyni"),
        "export",
        ["modules.m.factory", "has no attribute 'make_tyni'", "did you mean 'make_tiny'?"],
    ),
    (
        "factory_raises",
        module("bad_models:make_raises"),
        "export",
        ["modules.m.factory", "factory raised ValueError: depth must be even, got 3", "factory_args"],
    ),
    (
        "factory_bad_args",
        module(TINY, extra="factory_args = { chanels = 3 }\n"),
        "export",
        ["modules.m.factory", "chanels"],
    ),
    (
        "factory_not_module",
        module("bad_models:make_not_module"),
        "export",
        ["modules.m.factory", "returned dict, not a torch.nn.Module"],
    ),
    (
        "wrong_input_shape",
        module(TINY, shape="[1, 5, 8, 8]"),
        "export",
        ["modules.m.inputs", "x[1, 5, 8, 8]", "forward failed on the example inputs"],
    ),
    (
        "outputs_count",
        module(TINY, extra='outputs = ["y", "z"]\n'),
        "export",
        ["modules.m.outputs", "returns 1 tensor", "names 2"],
    ),
    (
        "data_dependent",
        module("bad_models:make_data_dependent"),
        "export",
        ["modules.m", "data-dependent control flow", "static shapes", "torch.where", "ranges of named dims"],
    ),
    (
        "fp32_islands_forbidden",
        module("bad_models:make_fp32_island", shape="[1, 8]", extra="export.forbid_fp32_islands = true\n"),
        "export",
        ["modules.m.export", "FP32 island", "node 'node_add' (Add)", "forbid_fp32_islands"],
    ),
    (
        "transpose_missing_input",
        module(TINY, extra='passes = [{ name = "bake_transpose", input = "image", perm = [0, 3, 1, 2] }]\n'),
        "export",
        ["modules.m.passes", "no input 'image'", "its inputs: x"],
    ),
    (
        "transpose_wrong_rank",
        module(TINY, extra='passes = [{ name = "bake_transpose", input = "x", perm = [0, 2, 1] }]\n'),
        "export",
        ["modules.m.passes", "perm [0, 2, 1] has 3 axes", "rank 4"],
    ),
    (
        "resize_missing_output",
        module(TINY, extra='passes = [{ name = "bake_resize", output = "logits", scale = 2 }]\n'),
        "export",
        ["modules.m.passes", "no output 'logits'", "its outputs: output_0"],
    ),
    (
        "unknown_pass",
        module(TINY, extra='passes = [{ name = "fold_constant" }]\n'),
        "graph_passes",
        ["modules.m.passes[0]", "unknown pass 'fold_constant'", "did you mean 'fold_constants'?"],
    ),
    (
        "unknown_rule",
        module(TINY, extra='precision.rules = [{ rule = "attention_scores" }]\n'),
        "precision_rules",
        ["modules.m.precision.rules[0]", "unknown rule 'attention_scores'", "did you mean 'attention_score'?"],
    ),
    (
        "rule_names_missing_node",
        module(TINY, extra='precision.rules = [{ rule = "name_pattern", nodes = ["node_conv2"] }]\n'),
        "precision_rules",
        ["modules.m.precision.rules[0]", "node 'node_conv2' does not exist", "did you mean"],
    ),
    (
        "parser_rejects_op",
        module("bad_models:make_det", shape="[1, 3, 3]"),
        "build",
        ["modules.m", "TensorRT ONNX parser rejected", "op Det", "node '", "build.log"],
    ),
]


# caught before any stage runs (a misspelt name costs no export)
PREFLIGHT = {"unknown_pass", "unknown_rule"}


@pytest.mark.parametrize("case, body, stage, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_module(project, case, body, stage, needles):
    write_case(project, case, body)
    r = build(project, case)
    line = one_error_line(r, 2, "module 'm'", *needles)
    assert line.startswith(f"trtforge: error: {stage}: ")
    report = project / f"out-{case}" / "report.json"
    if stage in ("export", "build"):  # the stage's log outlives its work folder, and is named
        log = project / ".trtforge-cache" / "logs" / "m" / f"{stage}.log"
        assert f"log: {log}" in line and log.is_file()
    if case in PREFLIGHT:
        assert not report.exists()
    else:
        stages = json.loads(report.read_text())["modules"][0]["stages"]
        assert stages[stage]["state"] == "failed"  # the status table blames the right stage
    nothing_lost(project, case, "m")


def test_verbose_adds_the_cause(project):
    write_case(project, "verbose_cause", module("bad_models:make_raises"))
    r = build(project, "verbose_cause")
    r_verbose = run_cli("--verbose", "build", "--quiet", "verbose_cause.toml", cwd=project)
    one_error_line(r, 2, "factory raised ValueError")
    assert "cause:" not in r.stderr
    assert "cause: ValueError: depth must be even" in r_verbose.stderr
    assert "Traceback" not in r_verbose.stderr


def test_fp32_islands_are_a_warning_by_default(project):
    """Hard-coded float32 in an FP16 model: reported (stderr warning + REPORT.md), still built."""
    case = "fp32_islands_warning"
    write_case(project, case, module("bad_models:make_fp32_island", shape="[1, 8]"))
    r = build(project, case)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("trtforge: warning:") and "FP32" in ln]
    assert len(warn) == 1 and "FP32 island" in warn[0] and "node_add (Add)" in warn[0], r.stderr
    assert "FP32 island" in (project / f"out-{case}" / "REPORT.md").read_text()
    assert "FP32 island(s) in the FP16 export" in (project / f"out-{case}" / "report.html").read_text()  # both reports
    assert list((project / f"out-{case}").rglob("m.engine"))


def test_rule_matching_nothing_warns_with_near_misses(project):
    case = "rule_matches_nothing"
    write_case(
        project,
        case,
        module(TINY, extra='precision.rules = [{ rule = "name_pattern", pattern = "^node_convolution$" }]\n'),
    )
    r = build(project, case)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("trtforge: warning:")]
    assert len(warn) == 1, r.stderr
    assert "rule 'name_pattern' matched no node" in warn[0] and "near misses" in warn[0]
    assert "node_conv2d" in warn[0]  # the closest real node name
    assert "matched no node" in (project / f"out-{case}" / "REPORT.md").read_text()
    assert "matched no node" in (project / f"out-{case}" / "report.html").read_text()  # both reports


def test_checkpoint_missing(project):
    case = "checkpoint_missing"
    write_case(
        project, case, module("bad_models:make_from_checkpoint", extra='factory_args = { path = "weights/none.pt" }\n')
    )
    one_error_line(build(project, case), 2, "module 'm'", "weights/none.pt", "checkpoint not found")
    nothing_lost(project, case, "m")


def test_checkpoint_with_pickled_objects_is_refused(project):
    """torch.load(weights_only=True): a checkpoint holding an arbitrary object is not unpickled."""
    case = "checkpoint_pickled"
    subprocess.run(
        [sys.executable, "-c", "import bad_models; bad_models.write_bad_checkpoint('bad.pt')"], cwd=project, check=True
    )
    write_case(project, case, module("bad_models:make_from_checkpoint", extra='factory_args = { path = "bad.pt" }\n'))
    one_error_line(
        build(project, case),
        2,
        "module 'm'",
        "bad.pt",
        "weights_only=True refuses",
        "torch.save(model.state_dict(), path)",
    )
    nothing_lost(project, case, "m")
