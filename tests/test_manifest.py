"""The manifest resolves every default at load time and names the field of every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtforge.errors import ManifestError
from trtforge.manifest import DEFAULT_PASSES, parse_manifest, settings_dict

BASE = """
[modules.m]
factory = "pkg.mod:make"
inputs.x = { shape = [1, 3, 8, 8] }
"""


def load(text: str):
    return parse_manifest(text, Path("/tmp/engines.toml"))


def test_defaults_are_resolved_at_load_time():
    m = load(BASE).modules[0]
    assert m.inputs[0].dtype == "float16" and m.inputs[0].range == (-1.0, 1.0)
    assert settings_dict(m.build) == {
        "backend": "auto",
        "optimization_level": 3,
        "workspace_mib": 4096,
        "rtx_compute_capabilities": (),
    }
    assert m.passes == DEFAULT_PASSES
    assert m.precision_rules == ({"rule": "attention_score", "mode": "all"},)
    assert m.tolerance("y") == {"atol": 0.01, "rtol": 0.01, "max_outside": 0.001, "min_cosine": 0.999}


def test_spelled_out_defaults_and_key_order_mean_the_same_module():
    spelled = """
[defaults]
build = { workspace_mib = 4096, backend = "auto" }
[modules.m]
inputs.x = { dtype = "float16", shape = [1, 3, 8, 8], range = [-1, 1] }
factory = "pkg.mod:make"
precision = { realizer = "auto" }
"""
    assert load(spelled).modules[0].as_key() == load(BASE).modules[0].as_key()


def test_defaults_table_applies_and_module_overrides_it():
    text = "[defaults]\nverify = { atol = 0.5 }\n" + BASE + "verify = { rtol = 0.2, outputs.y = { atol = 1.0 } }\n"
    m = load(text).modules[0]
    assert m.verify.atol == 0.5 and m.verify.rtol == 0.2
    assert m.tolerance("y")["atol"] == 1.0 and m.tolerance("z")["atol"] == 0.5


def test_rtx_compute_capabilities_are_normalised():
    m = load(BASE + 'build = { rtx_compute_capabilities = ["8.9", "8.6", "8.9"] }').modules[0]
    assert m.build.rtx_compute_capabilities == ("8.6", "8.9")


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ("inputs.y = { shape = [1, 0] }", "modules.m.inputs.y.shape", "dimension 1 is 0"),
        ("inputs.y = { shape = [1, -3] }", "modules.m.inputs.y.shape", "positive integer"),
        ("inputs.y = { shape = [1, 2.5] }", "modules.m.inputs.y.shape", "dimension 1 is 2.5"),
        ('inputs.y = { shape = [1], dtype = "fp16" }', "modules.m.inputs.y.dtype", "did you mean 'float16'"),
        ('buld = { backend = "auto" }', "modules.m.buld", "did you mean 'build'"),
        ('build = { backend = "trt" }', "modules.m.build.backend", "not one of"),
        ('build = { optimization_level = "3" }', "modules.m.build.optimization_level", "expected an integer"),
        ("verify = { atol = -1 }", "modules.m.verify.atol", "must be >= 0"),
        (
            'build = { rtx_compute_capabilities = ["9.0"] }',
            "rtx_compute_capabilities[0]",
            "Hopper (9.0) is not a TensorRT-RTX target; build it with backend = 'tensorrt'",
        ),
        ('build = { rtx_compute_capabilities = ["8.7"] }', "rtx_compute_capabilities[0]", "not one of"),
    ],
)
def test_mistakes_name_their_field(extra, field, words):
    with pytest.raises(ManifestError) as e:
        load(BASE + extra)
    line = e.value.one_line()
    assert field in line and words in line and "\n" not in line


def test_toml_syntax_error_names_line_and_column():
    with pytest.raises(ManifestError) as e:
        load("[modules.m]\nfactory = \n")
    assert "line 2" in e.value.one_line() and "column" in e.value.one_line()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden"])
def test_module_names_cannot_escape_the_output_folder(name):
    with pytest.raises(ManifestError, match="path separators"):
        load(f'[modules."{name}"]\nfactory = "p.m:f"\ninputs.x = {{ shape = [1] }}\n')
